"""Saving what a night's mail run or sweep has done, shared by MailSender and ComputeShutdown."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .domain import Night, NightRecord
from .ports import CancelLedger
from .retry import RetryPolicy

log = logging.getLogger(__name__)
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
