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
from dataclasses import dataclass, replace
from datetime import datetime
from datetime import time as wall_time

from .decisions import ShutdownPlan, opt_outs, plan_shutdown
from .delayed_stops import stop_delayed
from .domain import NOTICE_HOLD, Keep, Night, NightRecord, StopOutcome
from .errors import RunFailedError, traceback_if_bug
from .inventory import list_targets
from .night_rows import record_night
from .nightly import LEASE, SWEEP, audit_missed, pending_delays, record_missed, save_progress
from .notice_holds import hold, read_notices
from .ports import CancelLedger, ComputeWorkspace, PriceList
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .shutdown_calendar import ShutdownCalendar
from .stopping import FRESH_FOR, stop_while_fresh
from .sweep_report import SweepReport

log = logging.getLogger(__name__)
STOP_BUDGET = 180.0  # Consumption's default timeout is 5 minutes; leave room for start-up and listing
__all__ = ["FRESH_FOR", "SweepOptions", "SweepReport", "stop_unclaimed_instances", "sweep_workspace"]


@dataclass(frozen=True)
class SweepOptions:
    dry_run: bool = False
    max_parallel: int = 16
    workday_start: wall_time = wall_time(8, 0)  # a stop's saving counts until then, on the next working day
    currency: str = "USD"


def stop_unclaimed_instances(
    now: datetime,
    calendar: ShutdownCalendar,
    workspace: ComputeWorkspace,
    ledger: CancelLedger,
    options: SweepOptions = SweepOptions(),
    policy: RetryPolicy = BACKGROUND,
    clock: Callable[[], float] = time.monotonic,
    stop_budget: float = STOP_BUDGET,
    prices: PriceList | None = None,
) -> SweepReport | None:
    """One workspace's tick (see `sweep_workspace`), as a single-workspace run: a skipped day is logged,
    and RunFailedError is raised (after stopping the rest) if anything failed."""
    skipped = calendar.skipped(now)
    if skipped:
        log.info("ComputeShutdown: no shutdown on %s: %s", *skipped)
    report = sweep_workspace(now, calendar, workspace, ledger, options, policy, clock, stop_budget, prices)
    if report is not None and report.failures:
        raise RunFailedError("ComputeShutdown", report.failures)
    return report


def sweep_workspace(
    now: datetime,
    calendar: ShutdownCalendar,
    workspace: ComputeWorkspace,
    ledger: CancelLedger,
    options: SweepOptions = SweepOptions(),
    policy: RetryPolicy = BACKGROUND,
    clock: Callable[[], float] = time.monotonic,
    stop_budget: float = STOP_BUDGET,
    prices: PriceList | None = None,
    throttle: Backpressure | None = None,
) -> SweepReport | None:
    """Sweeps the workspace's night that is due, if any, and returns what it did, failures included.
    `throttle` holds back every call to Azure after a 429: shared by the workspaces of a subscription
    (ARM throttles per subscription), else one of its own.
    Raises RunFailedError for a missed night or failed delayed stops, and the error that kept it from
    sweeping at all."""
    audit_missed(now, calendar, ledger, policy)
    night = calendar.sweep_due(now)
    if night is None:
        return None  # the common case: no remote call at all
    try:
        record = policy.call(lambda: ledger.night_record(night, SWEEP), "reading the night's sweep record")
    except Exception:
        log.error(SweepReport(night, ShutdownPlan()).summary() + " - nothing was stopped")
        raise
    if record is not None and record.finished:
        return None  # a later tick of a finished night: one read, nothing logged
    args = (
        night,
        calendar,
        workspace,
        ledger,
        options,
        policy,
        clock,
        stop_budget,
        prices,
        throttle or Backpressure(),
    )
    swept = record is not None and (
        record.state == "waiting" or (record.kept is not None and not calendar.main_sweep_open(night, now))
    )
    if swept:  # the night's sweep is over (what failed then was reported then): delayed stops only
        stop_delayed(now, *args)
        return None
    if not calendar.main_sweep_open(night, now):
        record_missed(night, now, ledger, policy)  # never swept inside its window
        return None
    report = _main_sweep(now, *args)
    if report is not None and report.delays_due:  # a late sweep: some chosen stop times have come already
        try:
            stop_delayed(now, *args)
        except RunFailedError as error:  # the run fails naming both: the main sweep's and these
            report = replace(report, failures={**report.failures, **error.failures})
    return report


def _main_sweep(
    now, night, calendar, workspace, ledger, options, policy, clock, stop_budget, prices, throttle
) -> SweepReport | None:
    try:
        record = policy.call(lambda: ledger.claim(night, SWEEP, now, LEASE), "claiming the night's sweep")
    except Exception:
        log.error(SweepReport(night, ShutdownPlan()).summary() + " - nothing was stopped")
        raise
    if record is None:
        log.info("The sweep of the night of %s is being done by another run", night.day)
        return None
    try:
        record, keeps = _read_keeps(night, record, ledger, policy)
        notices = read_notices(ledger, night, calendar.rules.minimum_notice, now, policy)

        def hold_unnoticed(plan: ShutdownPlan) -> ShutdownPlan:
            """Hold what is due but whose people were not told long enough ago; honour the holds."""
            nonlocal record
            waiting = [i for i in plan.stop if not notices.ready(i.name)]
            if not waiting:
                return plan
            if options.dry_run:
                held = {i.name: Keep(i.name, notices.until(i.name), NOTICE_HOLD) for i in waiting}
            else:
                held = hold(ledger, night, [i.name for i in waiting], notices, policy)
                kept = tuple(sorted({*(record.kept or ()), *held}))
                record = policy.call(lambda: ledger.save(record.with_kept(kept)), "storing the holds")
            keeps.update(held)
            stop = tuple(i for i in plan.stop if i not in waiting)
            return replace(plan, stop=stop, kept=(*plan.kept, *waiting))

        report = _sweep(
            night, record, keeps, calendar.rules.zone, hold_unnoticed, workspace, options, policy, clock,
            stop_budget, throttle,
        )  # fmt: skip
    except Exception:
        log.error(SweepReport(night, ShutdownPlan()).summary() + " - nothing was stopped")
        save_progress(ledger, record.progressed((), ("the sweep",)), policy, after_error=True)
        raise
    # Failed stops keep the night incomplete, so that every later tick of the catch-up window retries
    # them; it waits for the delayed stops alone only once nothing of the main sweep is left to retry.
    waiting = bool(pending_delays(record, keeps)) and not report.failures
    save_progress(ledger, record.progressed(report.stopped, tuple(report.failures), waiting), policy)
    report = record_night(now, report, keeps, calendar, ledger, options, prices, policy, record.done)
    (log.error if report.failures else log.info)(report.summary())
    return replace(report, delays_due=any(k.due(now) for k in pending_delays(record, keeps)))


def _read_keeps(night: Night, record: NightRecord, ledger, policy: RetryPolicy) -> tuple[NightRecord, dict]:
    """The keeps in force. The claim closed the night to new keeps: the first read is stored, so that a
    click can tell whether this sweep honours it, and a retried tick honours exactly the same ones."""
    keeps = policy.call(lambda: ledger.kept_instances(night), "reading the ledger")
    if record.kept is None:
        kept = tuple(sorted(keeps))
        record = policy.call(
            lambda: ledger.save(record.with_kept(kept)), "storing the keeps the sweep honours"
        )
    return record, keeps


def _sweep(
    night, record: NightRecord, keeps, zone, hold_unnoticed, workspace, options, policy, clock, budget,
    azure: Backpressure,
) -> SweepReport:  # fmt: skip
    listed_at = clock()
    targets = list_targets(workspace, night.target.instances, policy, azure)
    out = opt_outs(targets.instances, night.target.opt_out_tag, night.day)
    for warning in out.warnings:
        log.warning("ComputeShutdown: %s", warning)
    plan = hold_unnoticed(plan_shutdown(targets.instances, record.kept or (), out.instances, record.done))
    of = {name.lower(): keep for name, keep in keeps.items()}
    held = {i.name.lower() for i in plan.kept if i.name.lower() in of and of[i.name.lower()].is_hold}
    for instance in plan.kept:
        keep = of.get(instance.name.lower())
        until = f"until {keep.until.astimezone(zone):%H:%M}" if keep and keep.until else "tonight"
        why = (
            "its people were told about it too late"
            if instance.name.lower() in held
            else "its owner asked to"
        )
        log.info("Keeping %s running %s: %s", instance.name, until, why)

    def times(names) -> tuple[str, ...]:
        return tuple(sorted(f"{of[n].until.astimezone(zone):%H:%M}" for n in names))

    timed = {i.name.lower() for i in plan.kept if i.name.lower() in of and of[i.name.lower()].until}
    later, noticed = times(timed - held), times(timed & held)
    failures = {name: "not found in the workspace" for name in targets.missing}
    if options.dry_run:
        for instance in plan.stop:
            log.info("Dry run: would stop %s", instance.name)
        return SweepReport(
            night, plan, tuple(i.name for i in plan.stop), {}, failures, True, later, held=noticed
        )

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
    return SweepReport(night, plan, stopped, outcomes, failures, delayed=later, held=noticed)
