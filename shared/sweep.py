"""ComputeShutdown: stop every targeted running instance nobody asked to keep, when the night is due.

Each tick asks the calendar whether a night's sweep is due; if not, nothing else happens. The sweep is
claimed in the ledger (so two ticks or hosts never sweep twice), which also closes the night to new
keeps; the keeps are then read once and kept on the sweep's record. A stop goes out only while the
read that said Running is at most FRESH_FOR seconds old: when stops are slow, the workspace is listed
again. A tick that could not finish leaves the night incomplete; later ticks inside the catch-up
window stop what is still due, and never an instance stopped earlier that night (its owner restarted it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .decisions import ShutdownPlan, opt_outs, plan_shutdown
from .domain import Night, NightRecord, StopOutcome
from .errors import RunFailedError, traceback_if_bug
from .inventory import list_targets
from .nightly import LEASE, claim_night, save_progress
from .ports import CancelLedger, ComputeWorkspace
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .shutdown_calendar import ShutdownCalendar
from .stopping import FRESH_FOR, stop_while_fresh

log = logging.getLogger(__name__)
SWEEP = "sweep"
STOP_BUDGET = 180.0  # Consumption's default timeout is 5 minutes; leave room for start-up and listing
__all__ = ["FRESH_FOR", "SweepOptions", "SweepReport", "stop_unclaimed_instances"]


@dataclass(frozen=True)
class SweepOptions:
    dry_run: bool = False
    max_parallel: int = 16


@dataclass(frozen=True)
class SweepReport:
    night: Night
    plan: ShutdownPlan
    stopped: tuple[str, ...] = ()
    outcomes: dict[str, StopOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def summary(self) -> str:
        def count(outcome: StopOutcome) -> int:
            return sum(1 for result in self.outcomes.values() if result is outcome)

        verb = "would stop" if self.dry_run else "stopped"
        failed = ", ".join(f"{name} ({why})" for name, why in self.failures.items())
        return (
            f"ComputeShutdown for the night of {self.night.day}: {verb} {len(self.stopped)}, "
            f"kept by request {len(self.plan.kept)}, "
            f"busy with a job {len(self.plan.busy) + count(StopOutcome.BUSY)}, "
            f"not running {len(self.plan.not_running) + count(StopOutcome.NOT_RUNNING)}, "
            f"opted out {len(self.plan.opted_out)}, restarted after tonight's stop {len(self.plan.stopped_before)}, "
            f"failed {len(self.failures)}" + (f" [{failed}]" if failed else "")
        )


def stop_unclaimed_instances(
    now: datetime,
    calendar: ShutdownCalendar,
    workspace: ComputeWorkspace,
    ledger: CancelLedger,
    options: SweepOptions = SweepOptions(),
    policy: RetryPolicy = BACKGROUND,
    clock: Callable[[], float] = time.monotonic,
    stop_budget: float = STOP_BUDGET,
) -> SweepReport | None:
    """Sweeps the night that is due, if any; raises RunFailedError (after stopping the rest) on failures."""
    _audit(now, calendar, ledger, policy)
    skipped = calendar.skipped(now)
    if skipped:
        log.info("ComputeShutdown: no shutdown on %s: %s", *skipped)
    night = calendar.sweep_due(now)
    if night is None:
        return None  # the common case: no remote call at all
    try:
        record = claim_night(ledger, night, SWEEP, now, policy)
    except Exception:
        log.error(SweepReport(night, ShutdownPlan()).summary() + " - nothing was stopped")
        raise
    if record is None:
        return None
    try:
        record = _read_keeps_once(night, record, ledger, policy)
        report = _sweep(night, record, workspace, options, policy, clock, stop_budget)
    except Exception:
        log.error(SweepReport(night, ShutdownPlan()).summary() + " - nothing was stopped")
        save_progress(ledger, record.progressed((), ("the sweep",)), policy, after_error=True)
        raise
    save_progress(ledger, record.progressed(report.stopped, tuple(report.failures)), policy)
    (log.error if report.failures else log.info)(report.summary())
    if report.failures:
        raise RunFailedError("ComputeShutdown", report.failures)
    return report


def _read_keeps_once(night: Night, record: NightRecord, ledger, policy: RetryPolicy) -> NightRecord:
    """The claim closed the night to new keeps: read them once and store what was read, so that a click
    can tell whether this sweep honours it, and a retried tick honours exactly the same ones."""
    if record.kept is not None:
        return record
    kept = tuple(sorted(policy.call(lambda: ledger.kept_instances(night), "reading the ledger")))
    return policy.call(lambda: ledger.save(record.with_kept(kept)), "storing the keeps the sweep honours")


def _sweep(night, record: NightRecord, workspace, options, policy, clock, budget) -> SweepReport:
    azure = Backpressure()  # one throttle for every AzureML call of this run
    listed_at = clock()
    targets = list_targets(workspace, night.target.instances, policy, azure)
    out = opt_outs(targets.instances, night.target.opt_out_tag, night.day)
    for warning in out.warnings:
        log.warning("ComputeShutdown: %s", warning)
    plan = plan_shutdown(targets.instances, record.kept or (), out.instances, record.done)
    for instance in plan.kept:
        log.info("Keeping %s running tonight: its owner asked to", instance.name)
    failures = {name: "not found in the workspace" for name in targets.missing}
    if options.dry_run:
        for instance in plan.stop:
            log.info("Dry run: would stop %s", instance.name)
        return SweepReport(night, plan, tuple(i.name for i in plan.stop), {}, failures, dry_run=True)

    def relist():
        return list_targets(workspace, night.target.instances, policy, azure).instances

    results = stop_while_fresh(
        [i.name for i in plan.stop],
        workspace,
        relist,
        listed_at,
        clock,
        policy,
        azure,
        options.max_parallel,
        budget,
    )
    for name, result in results.items():
        if isinstance(result, Exception):
            failures[name] = str(result)
            log.error("Could not stop %s: %s", name, result, exc_info=traceback_if_bug(result))
    outcomes = {name: result for name, result in results.items() if isinstance(result, StopOutcome)}
    stopped = tuple(name for name, result in outcomes.items() if result is StopOutcome.STOPPED)
    return SweepReport(night, plan, stopped, outcomes, failures)


def _audit(now: datetime, calendar: ShutdownCalendar, ledger: CancelLedger, policy: RetryPolicy) -> None:
    """Once a night's catch-up window has closed, make sure it was swept; if not, record it missed and
    fail this run, once: monitoring must hear of a night nobody swept."""
    night = calendar.audit_due(now)
    if night is None:
        return
    record = policy.call(lambda: ledger.night_record(night, SWEEP), "reading the night's sweep record")
    if record is not None and record.finished:
        return
    claimed = policy.call(lambda: ledger.claim(night, SWEEP, now, LEASE), "claiming the missed night")
    if claimed is None:
        return  # finished meanwhile, or a late sweep still holds it: a later tick looks again
    policy.call(lambda: ledger.save(claimed.missed()), "recording the missed night")
    due = ", ".join(claimed.failures) or "every targeted running instance"
    message = (
        f"missed: no sweep finished within catch_up_minutes after {night.shutdown_at:%H:%M} UTC, so nothing "
        f"more is stopped tonight (left running: {due})"
    )
    log.error("ComputeShutdown for the night of %s: %s", night.day, message)
    raise RunFailedError("ComputeShutdown", {f"night of {night.day}": message})
