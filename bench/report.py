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
            self.case, str(self.n), timing, "–" if self.calls is None else str(self.calls), per_instance,
            f"{self.rss_mb:.0f} MB" if self.rss_mb else "–", "; ".join(self.checks), verdict,
        ]  # fmt: skip


NOTES = """\
Notes:
- The timers tick every five minutes and ask the app's calendar what is due. Each run sets `shutdown_time`
  so that the real clock is where the case needs it: inside the sweep's catch-up window, inside the mail's
  warning window, or outside every window (the tick with nothing due). Each run has a ledger table of its
  own, created beforehand as it exists after the first night (the very first write ever adds 2 Table
  calls: a refused insert and the table's creation).
- Calls per stopped instance are 2: the adapter's own fresh read of the instance (`refresh_state`, a GET
  on the regional Azure ML API; a job may have started since the listing) and the stop POST to ARM, sent
  without azureml-core's internal re-read. The fixed part is 5 calls (Azure AD discovery and token, the
  subscription check, the workspace, the discovery document) plus one listing page per 100 computes (the
  stand-in's page size). A stop goes out only while the listing that said Running is at most 10 s old;
  when the stops take longer, those left are listed again (a relist: all pages once more). Hence
  calls <= 2N + ⌈N/page⌉·(1 + relists) + 5; the relists of each run are in the target.
- Table calls (Azurite behind the gate, the same 50 ms added): a sweep reads the night's record, claims
  the night (an insert that only one run can win), reads the keeps (one query) and saves its record twice
  (the keeps it honours, then its progress): 5. MailSender: read, claim, one save: 3. A later tick of a
  finished night reads the record once and calls nothing else; a tick with nothing due calls nothing and
  imports no SDK.
- Wall time is CPU-bound in the function's process beyond about 16 parallel stops: azureml-core opens a new
  TLS connection for every request. "stops in flight" is the peak of concurrent stop POSTs the stand-in saw.
- The tick with nothing due: "first" is the first call of both `main()`s after the functions were loaded
  (the loading rows give that cost); "warm" the median of 200 further ticks in that process.
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
        "stand-ins' request log; Table Storage calls are counted on their own (in the targets). Wall time is",
        "the function's `main()` in a fresh process, so a sweep or mail run includes importing azureml-core",
        "(about 0.6 s); a tick with nothing due imports no SDK at all.",
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
