"""The morning-after report's content, from the ledger's rows: pure values for the templates, and the CSV.

Per workspace: a table of its instances and what happened to them, the night's estimated saving, and
the month-to-date and previous month's totals; failures and missed nights come first. The CSV has
one line per instance and night of the month so far, so its `saving` column sums to the mail's
month-to-date total (the test holds the two together).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo

from .domain import PARTLY_MISSED, WorkspaceTarget
from .outcomes import DELAYED, FAILED, KEPT, LATE_NOTICE, OUTCOMES, STOPPED, InstanceNight, total_saving

CSV_COLUMNS = (
    "night", "subscription_id", "resource_group", "workspace", "instance", "outcome", "vm_size", "region",
    "stopped_at_utc", "kept_until_utc", "kept_by", "hours", "saving", "currency", "detail",
)  # fmt: skip
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection list


@dataclass(frozen=True)
class WorkspaceNight:
    """One workspace's part of the report for the night of `day`."""

    target: WorkspaceTarget
    zone: tzinfo
    day: date
    shutdown_at: datetime | None  # None: no shutdown that day
    skipped: str = ""  # why there was no shutdown
    state: str = ""  # the sweep record's: done, missed, incomplete, waiting; "" if none
    failures: tuple[str, ...] = ()  # what the sweep record says failed
    month: dict[date, list[InstanceNight]] = field(default_factory=dict)  # the month so far, this night too
    previous: dict[date, list[InstanceNight]] = field(default_factory=dict)  # the month before

    @property
    def rows(self) -> list[InstanceNight]:
        return sorted(
            self.month.get(self.day, []), key=lambda r: (OUTCOMES.index(r.outcome), r.instance.lower())
        )


def problems(parts: list[WorkspaceNight]) -> list[str]:
    """What went wrong, for the top of the report: missed nights, failed instances, failed sweeps."""
    found = []
    for part in parts:
        where = f"{part.target.name} ({part.target.resource_group})"
        if part.state == "missed":
            found.append(
                f"{where}: the night was missed: no sweep ran inside its window, nothing was stopped"
            )
        elif part.state == PARTLY_MISSED:
            found.append(f"{where}: the night's sweep ran, but some of its stops never happened (below)")
        elif part.shutdown_at and not part.state:
            found.append(f"{where}: no sweep has run for this night")
        for row in part.rows:
            if row.outcome == FAILED:
                found.append(f"{where}: {row.instance} was not stopped: {row.detail}")
        listed = {row.instance.lower() for row in part.rows if row.outcome == FAILED}
        for failure in part.failures:
            if failure.lower() not in listed:
                found.append(f"{where}: {failure} failed")
    return found


def totals(parts: list[WorkspaceNight]) -> dict[str, tuple[float, float, int]]:
    """(money, unpriced hours, stops) for the night, the month so far and the month before."""
    return {
        "night": total_saving(r for p in parts for r in p.rows),
        "month": total_saving(r for p in parts for rows in p.month.values() for r in rows),
        "previous": total_saving(r for p in parts for rows in p.previous.values() for r in rows),
    }


def describe(row: InstanceNight, zone: tzinfo) -> str:
    """What happened, in words a budget owner reads: `stopped at 20:00`, `delayed until 21:00 by …`."""
    if row.outcome == STOPPED:
        return f"stopped at {row.stopped_at.astimezone(zone):%H:%M}" if row.stopped_at else STOPPED
    by = f" by {row.kept_by}" if row.kept_by else ""
    if row.outcome == KEPT:
        return f"kept all night{by}"
    if row.outcome == DELAYED:
        return f"delayed until {row.kept_until.astimezone(zone):%H:%M}{by}" if row.kept_until else DELAYED
    if row.outcome == LATE_NOTICE and row.kept_until:
        return f"told late (started after the mail): held until {row.kept_until.astimezone(zone):%H:%M}"
    if row.outcome == LATE_NOTICE and row.kept_until:
        return f"told late (started after the mail): held until {row.kept_until.astimezone(zone):%H:%M}"
    if row.outcome == FAILED:
        return f"failed: {row.detail}"
    return row.outcome


def to_csv(parts: list[WorkspaceNight], currency: str) -> bytes:
    """One line per instance and night of the month so far, every workspace (UTF-8 with a BOM: Excel)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    lines = [(day, part, row) for part in parts for day, rows in part.month.items() for row in rows]
    for day, part, row in sorted(
        lines, key=lambda x: (x[0], x[1].target.label.lower(), x[2].instance.lower())
    ):
        t = part.target
        text = [
            day.isoformat(), t.subscription_id, t.resource_group, t.name, row.instance, row.outcome,
            row.size or "", row.region or "", _iso(row.stopped_at), _iso(row.kept_until), row.kept_by,
        ]  # fmt: skip
        figures = [f"{row.hours:.2f}", "" if row.saving is None else f"{row.saving:.2f}"]
        writer.writerow([*map(_text, text), *figures, _text(currency), _text(row.detail)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _text(cell: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets OWASP's leading `'`
    (a recipient, a resource group or an error message is not ours to trust). The figures are left out:
    the app formats them itself, never negative, and they must stay numbers."""
    return f"'{cell}" if cell.startswith(FORMULA_TRIGGERS) else cell


def _iso(instant: datetime | None) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if instant else ""
