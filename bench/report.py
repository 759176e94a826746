"""The benchmark table: one row per case, every target with its verdict."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Row:
    case: str
    n: int
    samples: list[float]  # seconds, one per run
    calls: int | None  # remote calls of the busiest run (None: not a case that calls out)
    rss_mb: float | None  # peak RSS of the measured process
    checks: dict[str, bool]  # target -> met (none: a row for comparison only)
    timing: str | None = None  # instead of median (min), e.g. percentiles
    connections: int | None = None  # new TLS connections to the stand-ins, busiest run
    cpu_ms_per_call: float | None = None  # CPU of the function's process per remote call, median run
    info: str | None = None  # measured facts shown with the targets, not judged
    incomplete: bool = False  # the run failed before it had done everything: no target is met

    @property
    def met(self) -> bool:
        return all(self.checks.values()) and not self.incomplete

    def cells(self) -> list[str]:
        timing = self.timing or f"{_t(statistics.median(self.samples))} ({_t(min(self.samples))})"
        per_instance = f"{self.calls / self.n:.2f}" if self.calls and self.n > 1 else "–"
        failed = [target for target, ok in self.checks.items() if not ok]
        if not self.checks:
            verdict = "– (for comparison)"
        else:
            verdict = "met" if not failed else "**NOT met**: " + "; ".join(failed)
            if self.incomplete:
                verdict += " (the targets not listed here were measured on a run that did not finish)"
        targets = "; ".join(self.checks) or "–"
        if self.info:
            targets += f" ({self.info})"
        return [
            self.case, str(self.n), timing, "–" if self.calls is None else str(self.calls), per_instance,
            "–" if self.connections is None else str(self.connections),
            "–" if self.cpu_ms_per_call is None else f"{self.cpu_ms_per_call:.2f}",
            f"{self.rss_mb:.0f} MB" if self.rss_mb else "–", targets, verdict,
        ]  # fmt: skip


HEAD = [
    "case",
    "N",
    "wall median (min)",
    "remote calls",
    "calls / instance",
    "TLS connections",
    "CPU ms / call",
    "peak RSS",
    "target",
    "verdict",
]


def render(rows: list[Row], context: str, intro: str, notes: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/). " + context + ".",
        "",
        intro.rstrip(),
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    verdict = (
        "Every target is met." if all(r.met for r in rows) else "Some targets are NOT met (see verdicts)."
    )
    return "\n".join([*lines, "", verdict, "", notes])


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
