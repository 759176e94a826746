"""The benchmark table: one row per case, every target with its verdict."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Row:
    case: str
    n: int
    samples: list[float]  # seconds, one per run
    calls: int  # remote calls of the busiest run (0: none)
    rss_mb: float | None  # peak RSS of the measured process
    checks: dict[str, bool]  # target -> met
    timing: str | None = None  # instead of median (min), e.g. percentiles

    @property
    def met(self) -> bool:
        return all(self.checks.values())

    def cells(self) -> list[str]:
        timing = self.timing or f"{_t(statistics.median(self.samples))} ({_t(min(self.samples))})"
        per_instance = f"{self.calls / self.n:.2f}" if self.calls and self.n > 1 else "–"
        failed = [target for target, ok in self.checks.items() if not ok]
        verdict = "met" if not failed else "**NOT met**: " + "; ".join(failed)
        return [
            self.case, str(self.n), timing, str(self.calls or "–"), per_instance,
            f"{self.rss_mb:.0f} MB" if self.rss_mb else "–", "; ".join(self.checks), verdict,
        ]  # fmt: skip


NOTES = """\
Notes:
- Calls per stopped instance are 2: azureml-core's `ComputeInstance.stop()` re-reads the state (GET) before
  the stop (POST); its public API cannot skip that. The fixed part is Azure AD discovery and token, the
  subscription check, the workspace, the discovery document, and one listing page per 100 computes (the
  stand-in's page size): 15 calls at 1,000 instances, exactly on the 2N + 15 bound.
- Wall time is CPU-bound in the function's process beyond about 16 parallel stops: azureml-core opens a new
  TLS connection for every request. "stops in flight" is the peak of concurrent stop POSTs the stand-in saw.
- The limits that matter in Azure (ARM's write throttling, the function timeout) are in README.md,
  "Performance and limits".
"""


def render(rows: list[Row], context: str) -> str:
    head = [
        "case",
        "N",
        "wall median (min)",
        "remote calls",
        "calls / instance",
        "peak RSS",
        "target",
        "verdict",
    ]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/). " + context + ".",
        "",
        "Remote calls are those to Azure AD, ARM, the Azure ML regional API and SendGrid, counted from the",
        "stand-ins' request log; the Table Storage query is counted on its own (its own target). Wall time is",
        "the function's `main()` in a fresh process, so it includes importing azureml-core (about 0.6 s).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    verdict = (
        "Every target is met." if all(r.met for r in rows) else "Some targets are NOT met (see verdicts)."
    )
    return "\n".join([*lines, "", verdict, "", NOTES])


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
