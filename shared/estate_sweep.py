"""ComputeShutdown over many workspaces: each due workspace swept in parallel, a few per subscription at
a time (ARM throttles per subscription and identity), one failing never holding back the others.

Every workspace logs its own summary line; then one total line sums them. The run fails, naming each
workspace that failed and why, once every workspace has had its turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from .errors import OutOfTimeError, RunFailedError, traceback_if_bug
from .fanout import run_per_group
from .inventory import LIST_BUDGET
from .ports import CancelLedger, ComputeWorkspace, PriceList
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .shutdown_calendar import ShutdownCalendar
from .sweep import STOP_BUDGET, SweepOptions, SweepReport, sweep_workspace
from .sweep_report import total_line

log = logging.getLogger(__name__)
WORKSPACES_PER_SUBSCRIPTION = 3  # at a time; each stops up to max_parallel instances at once
MIN_TURN = 20.0  # seconds: a workspace whose turn comes later still gets a listing and some stops


def sweep_estate(
    now: datetime,
    workspaces: Sequence[tuple[ShutdownCalendar, ComputeWorkspace]],
    ledger: CancelLedger,
    options: SweepOptions = SweepOptions(),  # noqa: B008 - frozen, as in sweep.py
    policy: RetryPolicy = BACKGROUND,
    clock: Callable[[], float] = time.monotonic,
    stop_budget: float = STOP_BUDGET,
    failures: dict[str, str] | None = None,
    named: bool = True,
    prices: PriceList | None = None,
) -> list[SweepReport]:
    """Sweep every workspace that is due; RunFailedError once all are done if any failed (`failures`
    holds those found before, e.g. entries whose workspaces could not be listed). Failures are named
    with their workspace unless `named` is False (a single-workspace deployment): then a workspace's
    own error is raised as it is."""
    failures = dict(failures or {})
    started = clock()
    # ARM throttles per subscription and identity: a 429 in one workspace holds back its neighbours too.
    throttles = {c.target.subscription_id.lower(): Backpressure() for c, _ in workspaces}

    def sweep(item: tuple[ShutdownCalendar, ComputeWorkspace]) -> SweepReport | None:
        calendar, workspace = item
        left = max(MIN_TURN, stop_budget - (clock() - started))  # the time the others' turns took
        throttle = throttles[calendar.target.subscription_id.lower()]
        return sweep_workspace(
            now, calendar, workspace, ledger, options, policy, clock, left, prices, throttle
        )

    outcomes = run_per_group(
        list(workspaces), sweep, lambda item: item[0].target.subscription_id.lower(),
        WORKSPACES_PER_SUBSCRIPTION, stop_budget + LIST_BUDGET,
    )  # fmt: skip
    reports, failed = [], 0
    for item in workspaces:  # in the settings' order, whichever finished first
        calendar, outcome = item[0], outcomes[item]
        label = calendar.target.label
        if isinstance(outcome, SweepReport):
            reports.append(outcome)
            failures.update({_key(named, label, name): why for name, why in outcome.failures.items()})
        elif isinstance(outcome, RunFailedError):
            failed += 1
            failures.update({_key(named, label, name): why for name, why in outcome.failures.items()})
        elif isinstance(outcome, Exception):
            failed += 1
            failures[label] = str(outcome)
            if isinstance(outcome, OutOfTimeError):
                log.error("ComputeShutdown in workspace %s: %s", label, outcome)
            else:
                log.error("ComputeShutdown in workspace %s failed: %s", label, outcome,
                          exc_info=traceback_if_bug(outcome))  # fmt: skip
    if reports or failures:
        (log.error if failures else log.info)(
            total_line(reports, len(reports) + failed, failures, options.dry_run)
        )
    alone = [o for o in outcomes.values() if isinstance(o, Exception)]
    if not named and alone:
        raise alone[0]  # one workspace: its own error, whose type tells monitoring what happened
    if failures:
        raise RunFailedError("ComputeShutdown", failures)
    return reports


def _key(named: bool, label: str, name: str) -> str:
    return f"{label}: {name}" if named else name
