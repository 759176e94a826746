"""ComputeShutdown: stop every targeted running instance nobody asked to keep tonight."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from .decisions import ShutdownPlan, plan_shutdown
from .errors import RunFailedError, traceback_if_bug
from .fanout import run_bounded
from .inventory import list_targets
from .ports import CancelLedger, ComputeWorkspace
from .retry import BACKGROUND, Backpressure, RetryPolicy
from .settings import Settings

log = logging.getLogger(__name__)

# Default Functions timeout on Consumption is 5 minutes; leave room for start-up and the listing.
STOP_BUDGET = 180.0


@dataclass(frozen=True)
class SweepReport:
    day: date
    plan: ShutdownPlan
    stopped: tuple[str, ...] = ()
    already_stopped: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would stop" if self.dry_run else "stopped"
        failed = ", ".join(f"{name} ({why})" for name, why in self.failures.items())
        return (
            f"ComputeShutdown for the night of {self.day}: {verb} {len(self.stopped)}, "
            f"kept by request {len(self.plan.kept)}, busy with a job {len(self.plan.busy)}, "
            f"not running {len(self.plan.not_running) + len(self.already_stopped)}, "
            f"failed {len(self.failures)}" + (f" [{failed}]" if failed else "")
        )


def stop_unclaimed_instances(
    settings: Settings,
    workspace: ComputeWorkspace,
    ledger: CancelLedger,
    now: datetime,
    policy: RetryPolicy = BACKGROUND,
    stop_budget: float = STOP_BUDGET,
) -> SweepReport:
    """Stops what must stop; raises RunFailedError (after stopping the rest) if anything failed."""
    _, day = settings.nearest_shutdown(now)
    azure = Backpressure()  # one throttle for every AzureML call of this run
    try:
        targets = list_targets(workspace, settings.instances, policy, azure)
        # Read as late as possible, so clicks made while the listing ran are honoured too.
        kept = set(policy.call(lambda: ledger.kept_instances(settings.workspace, day), "reading the ledger"))
    except Exception:
        log.error(SweepReport(day, ShutdownPlan()).summary() + " - nothing was stopped")
        raise
    plan = plan_shutdown(targets.instances, kept)
    report = _execute(settings, workspace, plan, day, policy, stop_budget, azure)
    failures = {**{name: "not found in the workspace" for name in targets.missing}, **report.failures}
    report = SweepReport(day, plan, report.stopped, report.already_stopped, failures, settings.dry_run)
    (log.error if failures else log.info)(report.summary())
    if failures:
        raise RunFailedError("ComputeShutdown", failures)
    return report


def _execute(
    settings: Settings,
    workspace: ComputeWorkspace,
    plan: ShutdownPlan,
    day: date,
    policy: RetryPolicy,
    budget: float,
    azure: Backpressure,
) -> SweepReport:
    for instance in plan.kept:
        log.info("Keeping %s running tonight: its owner asked to", instance.name)
    if settings.dry_run:
        for instance in plan.stop:
            log.info("Dry run: would stop %s", instance.name)
        return SweepReport(day, plan, stopped=tuple(i.name for i in plan.stop), dry_run=True)

    def stop(name: str) -> bool:
        return policy.call(lambda: workspace.stop(name), f"stopping {name}", azure)

    outcomes = run_bounded([i.name for i in plan.stop], stop, settings.max_parallel, budget)
    stopped = tuple(name for name, result in outcomes.items() if result is True)
    gone = tuple(name for name, result in outcomes.items() if result is False)
    failures = {name: str(result) for name, result in outcomes.items() if isinstance(result, Exception)}
    for name, result in outcomes.items():
        if isinstance(result, Exception):
            log.error("Could not stop %s: %s", name, result, exc_info=traceback_if_bug(result))
    return SweepReport(day, plan, stopped, gone, failures)
