"""`make check` (python -m devhost.check): the preflight after a deployment or a change of settings.

Loads local.settings.json like `make run` and `func start` (variables already set win), then checks what
tonight would do: the settings parse, the identity signs in, every workspace is listed, and which
instances would be mailed about and stopped. It sends nothing, stops nothing and writes nothing.
Exit status: 0 all good, 1 a workspace (or the ledger) could not be checked, 2 the settings are invalid.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from shared import app, redaction
from shared.errors import ConfigurationError
from shared.preflight import Preflight, WorkspaceCheck
from shared.rendering import format_local
from shared.shutdown_calendar import DAY_NAMES

from . import local_settings

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make check", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json",
                        help="local settings file to load if it exists (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.settings.exists():
        try:
            local_settings.apply(local_settings.load(args.settings))
        except local_settings.LocalSettingsError as error:
            print(f"Cannot check: {error}")
            return 2
    try:
        the_app = app.bootstrap()
    except ConfigurationError as error:
        print(f"Cannot check: {redaction.redact(str(error))}")
        return 2
    report = the_app.preflight()
    print(redaction.redact(render(report, the_app.settings.dry_run, the_app.settings.warnings)))
    return 0 if report.ok else 1


def render(report: Preflight, dry_run: bool, warnings: tuple[str, ...] = ()) -> str:
    lines = [
        f"Preflight at {report.now:%Y-%m-%d %H:%M} UTC: settings valid, {len(report.workspaces)} workspace(s)"
    ]
    lines += [f"WARNING: {warning}" for warning in warnings]
    for check in report.workspaces:
        lines += _workspace(check, report.now)
    for where, problem in report.problems.items():
        if not any(check.target.label == where for check in report.workspaces):
            lines.append(f"\n{where}: NOT CHECKED: {problem}")
    for where, why in report.not_managed.items():
        lines.append(f"\nNot managed: {where}, {why}")
    lines.append("")
    if dry_run:
        lines.append("dry_run is on: tonight's runs will only log what they would do.")
    verdict = "All checks passed." if report.ok else f"{len(report.problems)} problem(s): see above."
    lines.append(f"{verdict} Nothing was sent, stopped or written.")
    return "\n".join(lines)


def _workspace(check: WorkspaceCheck, now: datetime) -> list[str]:
    lines = [f"\nWorkspace {check.target.label}"]
    if check.night is None:
        lines.append(
            "  no shutdown ahead in the calendar (shutdown_days, skip_dates and holidays leave none)"
        )
    else:
        lines.append(f"  next shutdown: {format_local(check.night.shutdown_at, check.zone)}"
                     f" (in {_duration(check.night.shutdown_at - now)})")  # fmt: skip
    if check.rules is not None:
        rules = check.rules
        days = ", ".join(DAY_NAMES[d] for d in sorted(rules.days))
        lines.append(f"  calendar: {days} at {rules.shutdown_time:%H:%M} {getattr(rules.zone, 'key', rules.zone)},"
                     f" mail {_minutes(rules.warning)} min before")  # fmt: skip
    if check.night is not None and check.rules is not None:
        mail_at = (check.night.shutdown_at - check.rules.warning).astimezone(check.zone)
        notice = _minutes(check.rules.minimum_notice)
        lines.append(
            f"  mail at {mail_at:%H:%M}; minimum_notice_minutes {notice}: an instance started after the"
            f" mail is told on the next tick and stopped no sooner than {notice} min after that"
        )
    if check.problem and not any((check.plan.stop, check.plan.kept, check.plan.not_running)):
        lines.append(f"  PROBLEM: {check.problem}")
        return lines
    plan = check.plan
    lines.append(f"  would stop {len(plan.stop)}{_names(i.name for i in plan.stop)}")
    kept = [f"{i.name} ({_until(check.kept_until.get(i.name), check.zone)})" for i in plan.kept]
    lines.append(f"  kept by request {len(kept)}{_names(kept)}")
    lines.append(
        f"  busy with a job {len(plan.busy)}{_names(i.name for i in plan.busy)} (stopped only if the job has ended)"
    )
    lines.append(f"  opted out {len(plan.opted_out)}{_names(i.name for i in plan.opted_out)}")
    lines.append(f"  not running {len(plan.not_running)}")
    if check.missing:
        lines.append(f"  NOT FOUND in the workspace: {', '.join(check.missing)}")
    for to, names in check.recipients.items():
        lines.append(f"  mail to {to}: {', '.join(names)}")
    if not check.recipients:
        lines.append("  no mail: no running instance to announce")
    if check.problem:
        lines.append(f"  PROBLEM: {check.problem}")
    return lines


def _minutes(span) -> int:
    return int(span.total_seconds() // 60)


def _names(names) -> str:
    listed = list(names)
    return f": {', '.join(listed)}" if listed else ""


def _until(until: datetime | None, zone) -> str:
    return "all night" if until is None else f"until {until.astimezone(zone):%H:%M}"


def _duration(delta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


if __name__ == "__main__":
    sys.exit(main())
