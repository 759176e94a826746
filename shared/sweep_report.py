"""The one summary line a sweep logs, in a fixed shape so that a chart per count is one query:
`ComputeShutdown for the night of 2026-11-24: stopped 7, kept by request 2, ..., failed 0`."""

from __future__ import annotations

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

    def summary(self) -> str:
        def count(outcome: StopOutcome) -> int:
            return sum(1 for result in self.outcomes.values() if result is outcome)

        verb = "would stop" if self.dry_run else "stopped"
        failed = ", ".join(f"{name} ({why})" for name, why in self.failures.items())
        return (
            f"ComputeShutdown for the night of {self.night.day}: {verb} {len(self.stopped)}, "
            f"kept by request {len(self.plan.kept) - len(self.delayed)}, "
            f"busy with a job {len(self.plan.busy) + count(StopOutcome.BUSY)}, "
            f"not running {len(self.plan.not_running) + count(StopOutcome.NOT_RUNNING)}, "
            f"opted out {len(self.plan.opted_out)}, restarted after tonight's stop {len(self.plan.stopped_before)}, "
            f"delayed {len(self.delayed)}"
            + (f" (until {', '.join(self.delayed)})" if self.delayed else "")
            + ", "
            f"failed {len(self.failures)}" + (f" [{failed}]" if failed else "")
        )
