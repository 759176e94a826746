"""Saving what a night's mail run or sweep has done, shared by MailSender and ComputeShutdown."""

from __future__ import annotations

import logging
from datetime import timedelta

from .domain import NightRecord
from .ports import CancelLedger
from .retry import RetryPolicy

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=11)  # longer than host.json's functionTimeout: a live run keeps its claim


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
