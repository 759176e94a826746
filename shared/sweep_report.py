"""The summary lines a sweep logs, in a fixed shape so that a chart per count, and per workspace, is
one query: `ComputeShutdown for the night of 2026-11-24 in workspace <sub>/<group>/<name>: stopped 7,
kept by request 2, ..., failed 0`, and after every workspace, `ComputeShutdown total over 3
workspace(s): stopped 19, ...` with the same counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .decisions import ShutdownPlan
from .domain import Night, StopOutcome


@dataclass(frozen=True)
class SweepReport:
    night: Night
    plan: ShutdownPlan
    stopped: tuple[str, ...] = ()
    outcomes: dict[str, StopOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    delayed: tuple[str, ...] = ()  # local stop times of the kept instances somebody chose to stop later
    delays_due: bool = False  # some of those times have come already (a late sweep)
    rows: tuple = ()  # what happened to each instance (shared.outcomes.InstanceNight), priced
    held: tuple[str, ...] = ()  # local stop times of the kept instances told about too late (notice)
    currency: str = "USD"

    def counts(self) -> Counter:
        def count(outcome: StopOutcome) -> int:
            return sum(1 for result in self.outcomes.values() if result is outcome)

        return Counter({
            "stopped": len(self.stopped),
            "kept by request": len(self.plan.kept) - len(self.delayed) - len(self.held),
            "busy with a job": len(self.plan.busy) + count(StopOutcome.BUSY),
            "not running": len(self.plan.not_running) + count(StopOutcome.NOT_RUNNING),
            "opted out": len(self.plan.opted_out),
            "restarted after tonight's stop": len(self.plan.stopped_before),
            "delayed": len(self.delayed),
            "late notice": len(self.held),
            "failed": len(self.failures),
        })  # fmt: skip

    def summary(self) -> str:
        counts = self.counts()
        if self.dry_run:
            counts = Counter({("would stop" if k == "stopped" else k): v for k, v in counts.items()})
        where = f"ComputeShutdown for the night of {self.night.day} in workspace {self.night.target.label}"
        listing = _listing(counts, self.failures, self.delayed, self.held)
        return f"{where}: {listing}{_saving([self], self.currency)}"


def total_line(
    reports: Iterable[SweepReport], workspaces: int, failures: dict[str, str], dry_run: bool
) -> str:
    """The line after every workspace's own: the same counts, summed, and every failure named."""
    counts: Counter = Counter(dict.fromkeys(SweepReport(None, ShutdownPlan()).counts(), 0))  # type: ignore[arg-type]
    for report in reports:
        counts.update(report.counts())
    counts["failed"] = len(failures)
    if dry_run:
        counts = Counter({("would stop" if k == "stopped" else k): v for k, v in counts.items()})
    reports = list(reports)
    currency = reports[0].currency if reports else "USD"
    listing = _listing(counts, failures, ()) + _saving(reports, currency)
    return f"ComputeShutdown total over {workspaces} workspace(s): {listing}"


def _saving(reports: list[SweepReport], currency: str) -> str:
    """`, saving 12.34 USD` (`+ 5.5 h unpriced` for stops without a price): the night's estimate."""
    rows = [row for report in reports for row in report.rows]
    if not rows or any(report.dry_run for report in reports):
        return ""
    from .outcomes import total_saving  # outcomes builds on this module

    money, unpriced, _ = total_saving(rows)
    return f", saving {money:.2f} {currency}" + (f" + {unpriced:g} h unpriced" if unpriced else "")


def _listing(counts: Counter, failures: dict[str, str], delayed: tuple[str, ...], held=()) -> str:
    parts = []
    for name, value in counts.items():
        part = f"{name} {value}"
        if name == "delayed" and delayed:
            part += f" (until {', '.join(delayed)})"
        if name == "late notice" and held:
            part += f" (held until {', '.join(held)})"
        if name == "failed" and failures:
            part += " [" + ", ".join(f"{key} ({why})" for key, why in failures.items()) + "]"
        parts.append(part)
    return ", ".join(parts)
