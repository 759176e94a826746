"""Claiming and saving what a night's mail run or sweep has done, and recording a night nobody swept."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from .domain import Keep, Night, NightRecord
from .errors import RunFailedError
from .outcomes import FAILED, InstanceNight
from .ports import CancelLedger
from .retry import RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)
MAIL, SWEEP = "mail", "sweep"  # the kinds of night record: a night's mail run and its sweep
LEASE = timedelta(minutes=11)  # longer than host.json's functionTimeout: a live run keeps its claim


def claim_night(ledger: CancelLedger, night: Night, kind: str, now: datetime, policy: RetryPolicy):
    """Claim the night's mail run or sweep, or None if it is finished or another run holds it. A finished
    night is read, not claimed: every later tick of its window costs one read and logs nothing."""
    record = policy.call(lambda: ledger.night_record(night, kind), f"reading the night's {kind} record")
    if record is not None and record.finished:
        log.debug("%s for the night of %s: already finished", kind, night.day)
        return None
    claimed = policy.call(lambda: ledger.claim(night, kind, now, LEASE), f"claiming the night's {kind}")
    if claimed is None:
        log.info("The %s for the night of %s is being done by another run", kind, night.day)
    return claimed


def save_progress(ledger: CancelLedger, record: NightRecord, policy: RetryPolicy, after_error: bool = False):
    """Store `record`. After an error the run fails anyway: a save that fails too is logged, so that
    the first error is the one reported, and a later tick retries once the claim's lease runs out."""
    what = f"saving the {record.kind} record of {record.night_key}"
    if not after_error:
        return policy.call(lambda: ledger.save(record), what)
    try:
        return policy.call(lambda: ledger.save(record), what)
    except Exception as error:
        log.error("%s failed too: %s", what, error)
        return None


def audit_missed(
    now: datetime, calendar: ShutdownCalendar, ledger: CancelLedger, policy: RetryPolicy
) -> None:
    """Once a night's catch-up window has closed, make sure it was swept; if not, record it missed and
    fail this run, once: monitoring must hear of a night nobody swept."""
    night = calendar.audit_due(now)
    if night is None:
        return
    record = policy.call(lambda: ledger.night_record(night, SWEEP), "reading the night's sweep record")
    if record is not None and record.finished:
        return
    record_missed(night, now, ledger, policy)


def record_missed(night: Night, now: datetime, ledger: CancelLedger, policy: RetryPolicy) -> None:
    """Record the night missed and fail this run (once: a missed night is finished). A night whose main
    sweep ran but whose delayed stops got no tick is recorded as that: those instances ran all night."""
    claimed = policy.call(lambda: ledger.claim(night, SWEEP, now, LEASE), "claiming the missed night")
    if claimed is None:
        return  # finished meanwhile, or a late sweep still holds it: a later tick looks again
    if claimed.kept is not None:  # the main sweep ran: only what it left for later can have been missed
        _partly_missed(night, claimed, ledger, policy)
        return
    policy.call(lambda: ledger.save(claimed.missed()), "recording the missed night")
    due = ", ".join(claimed.failures) or "every targeted running instance"
    message = (
        f"missed: no sweep finished within catch_up_minutes after {night.shutdown_at:%H:%M} UTC, so nothing "
        f"more is stopped tonight (left running: {due})"
    )
    log.error("ComputeShutdown for the night of %s: %s", night.day, message)
    raise RunFailedError("ComputeShutdown", {f"night of {night.day}": message})


def pending_delays(record: NightRecord, keeps: dict[str, Keep]) -> list[Keep]:
    """Delayed keeps the sweep honours and has not handled yet (stopped, or given up on)."""
    honoured = {name.lower() for name in record.kept or ()}
    handled = {name.lower() for name in record.done}
    return [
        keep for name, keep in keeps.items()
        if name.lower() in honoured and name.lower() not in handled and keep.until is not None
    ]  # fmt: skip


def _partly_missed(night: Night, record: NightRecord, ledger: CancelLedger, policy: RetryPolicy) -> None:
    keeps = policy.call(lambda: ledger.kept_instances(night), "reading the keeps in force")
    missed = {
        keep.instance: f"its delayed stop at {keep.until:%H:%M} UTC got no tick within catch_up_minutes: "
        "it ran all night"
        for keep in pending_delays(record, keeps)
    }
    left = {  # each was reported by its own tick too; this is the night's last word on them
        name: "still not stopped when the catch-up window closed: it ran all night"
        for name in record.failures
        if name not in missed
    }
    policy.call(lambda: ledger.save(record.partly_missed((*missed, *left))), "recording the missed stops")
    if missed:
        stored = policy.call(lambda: ledger.outcomes(night.target, night.day, night.day), "reading the rows")
        rows = {row.instance.lower(): row for row in stored.get(night.day, ())}
        failed = [
            replace(rows.get(name.lower()) or InstanceNight(name, FAILED), outcome=FAILED, detail=why)
            for name, why in missed.items()
        ]
        policy.call(lambda: ledger.record_outcomes(night, failed), "storing the missed stops' rows")
    log.error(
        "ComputeShutdown for the night of %s: the sweep at %s UTC ran; %s",
        night.day, f"{night.shutdown_at:%H:%M}",
        "; ".join(f"{name}: {why}" for name, why in {**missed, **left}.items()) or "nothing was left to stop",
    )  # fmt: skip
    if missed or left:
        raise RunFailedError("ComputeShutdown", {**missed, **left})
