"""ComputeShutdown, later in the night: stop the instances somebody chose to stop later (shutdown + N min).

After the night's sweep, a night with delayed keeps is *waiting*. Each later tick inside the night's
window reads the keeps in force (a click may have moved a stop time later meanwhile) and stops each
delayed instance on the first tick at or after its time, inside the catch-up window counted from that
time. Before stopping one it marks the keep `stopping` over the version it read: a click that moved the
time in between wins (the mark fails, the instance waits), and a click after the mark is told the truth.
"""

from __future__ import annotations

import logging

from .decisions import opt_outs
from .domain import Keep, Night, NightRecord, StopOutcome
from .errors import RunFailedError, traceback_if_bug
from .inventory import list_targets
from .night_rows import ROWS, record_delayed_stops
from .nightly import LEASE, SWEEP, pending_delays, save_progress
from .notice_holds import hold, read_notices
from .ports import CancelLedger, ComputeWorkspace, PriceList
from .retry import Backpressure, RetryPolicy
from .stopping import stop_while_fresh

log = logging.getLogger(__name__)


def stop_delayed(
    now, night: Night, calendar, workspace: ComputeWorkspace, ledger: CancelLedger, options, policy: RetryPolicy,
    clock, budget: float, prices: PriceList | None = None, throttle: Backpressure | None = None,
) -> NightRecord | None:  # fmt: skip
    """One tick of a waiting night. Raises RunFailedError (after doing the rest) if anything failed."""
    record = policy.call(lambda: ledger.claim(night, SWEEP, now, LEASE), "claiming the night's delayed stops")
    if record is None:
        return None
    zone, catch_up = calendar.rules.zone, calendar.rules.catch_up
    # What an earlier tick failed keeps the night incomplete while the main sweep's window is open: the
    # next tick retries those stops whatever the delayed ones do.
    retrying = bool(record.failures) and calendar.main_sweep_open(night, now)
    carried = dict.fromkeys(record.failures if retrying else (), "")
    failures: dict[str, str] = {}
    handled: list[str] = []
    try:
        keeps = policy.call(lambda: ledger.kept_instances(night), "reading the keeps in force")
        pending = pending_delays(record, keeps)
        due = [keep for keep in pending if keep.due(now)]
        if due:  # nobody is stopped before their people were told about it long enough ago
            notices = read_notices(ledger, night, calendar.rules.minimum_notice, now, policy)
            early = [keep.instance for keep in due if not notices.ready(keep.instance)]
            if early:  # only one that would be stopped now: not one its tag opts out, nor one not running
                listed = list_targets(workspace, night.target.instances, policy, throttle or Backpressure())
                out = _opted_out(listed.instances, night)
                live = {
                    i.name.lower() for i in listed.instances if i.is_running and i.name.lower() not in out
                }
                early = [name for name in early if name.lower() in live]
            if early:
                hold(ledger, night, early, notices, policy)
                log.info("Holding %s: told too recently to be stopped yet", ", ".join(early))
            due = [keep for keep in due if keep.instance not in early]
        for keep in due:
            if now > keep.until + catch_up:  # its window has closed: nothing is stopped this late
                failures[keep.instance] = f"missed its delayed stop at {keep.until.astimezone(zone):%H:%M}"
                handled.append(keep.instance)
        marked = [m for k in due if k.instance not in handled and (m := _mark(ledger, night, k, policy))]
        results = _stop(marked, night, workspace, options, policy, clock, budget, throttle) if marked else {}
        for name, result in results.items():
            if isinstance(result, Exception):
                failures[name] = str(result)
                log.error("Could not stop %s: %s", name, result, exc_info=traceback_if_bug(result))
            else:
                handled.append(name)  # stopped, not running any more, or busy: done with it tonight
        stopped = [name for name, result in results.items() if result is StopOutcome.STOPPED]
        try:
            record_delayed_stops(now, night, stopped, calendar, ledger, options, prices, policy)
        except Exception as error:  # the stops stand; the report's rows of them do not
            failures[ROWS] = str(error)
            log.error("Could not store %s: %s", ROWS, error, exc_info=traceback_if_bug(error))
    except Exception as error:
        failures.setdefault("the delayed stops", str(error))
        left = {**carried, **failures}
        save_progress(ledger, _progress(record, handled, left, not carried), policy, after_error=True)
        raise
    waiting = [k for k in pending if k.instance not in handled]
    left = {**carried, **failures}
    record = save_progress(ledger, _progress(record, handled, left, bool(waiting) and not carried), policy)
    _summarise(night, zone, options.dry_run, marked, results, waiting, failures)
    if failures:
        raise RunFailedError("ComputeShutdown", failures)
    return record


def _summarise(night, zone, dry_run, marked, results, waiting, failures) -> None:
    acted = (
        [k.instance for k in marked]
        if dry_run
        else [n for n, r in results.items() if r is StopOutcome.STOPPED]
    )
    still = [k for k in waiting if k.instance not in failures]
    later = ", ".join(sorted(f"{k.until.astimezone(zone):%H:%M}" for k in still))
    failed = ", ".join(f"{name} ({why})" for name, why in failures.items())
    (log.error if failures else log.info)(
        f"ComputeShutdown for the night of {night.day} in workspace {night.target.label}, delayed stops: "
        f"{'would stop' if dry_run else 'stopped'} {len(acted)}"
        + (f" [{', '.join(acted)}]" if acted else "")
        + f", still delayed {len(still)}"
        + (f" (until {later})" if later else "")
        + f", failed {len(failures)}"
        + (f" [{failed}]" if failed else "")
    )


def _progress(record: NightRecord, handled, failures, waiting: bool) -> NightRecord:
    return record.progressed(tuple(handled), tuple(failures), waiting=waiting)


def _mark(ledger: CancelLedger, night: Night, keep: Keep, policy: RetryPolicy) -> Keep | None:
    if keep.stopping:
        return keep  # marked by an earlier tick whose stop failed: try again
    marked = policy.call(
        lambda: ledger.mark(night, keep, stopping=True), f"marking {keep.instance} as stopping"
    )
    if marked is None:
        log.info("%s: its stop time changed just now; it waits", keep.instance)
    return marked


def _stop(marked: list[Keep], night, workspace, options, policy, clock, budget, throttle) -> dict:
    if options.dry_run:
        for keep in marked:
            log.info("Dry run: would stop %s now (kept until %s)", keep.instance, keep.until)
        return {keep.instance: StopOutcome.NOT_RUNNING for keep in marked}
    azure = throttle or Backpressure()
    listed_at = clock()
    instances = list_targets(workspace, night.target.instances, policy, azure).instances
    listing = {i.name.lower(): i for i in instances}
    opted_out = _opted_out(instances, night)
    results: dict = {}
    running = []
    for keep in marked:
        instance = listing.get(keep.instance.lower())
        if keep.instance.lower() in opted_out:
            log.info("Not stopping %s: its %s tag opts it out", keep.instance, night.target.opt_out_tag)
            results[keep.instance] = StopOutcome.NOT_RUNNING  # left alone, as the night's sweep did
        elif instance is None or not instance.is_running:
            results[keep.instance] = (
                StopOutcome.BUSY if instance is not None and instance.is_busy else StopOutcome.NOT_RUNNING
            )
        else:
            running.append(instance.name)

    def relist():
        return list_targets(workspace, night.target.instances, policy, azure).instances

    results.update(
        stop_while_fresh(
            running, workspace, relist, listed_at, clock, policy, azure, options.max_parallel, budget
        )
    )
    return results


def _opted_out(instances, night: Night) -> set[str]:
    """The names (lower case) of the instances whose tag keeps them out of this night."""
    return {i.name.lower() for i in opt_outs(instances, night.target.opt_out_tag, night.day).instances}
