"""python -m bench: measure the targets of docs/benchmarks.md and write that file.

The app runs unchanged in fresh processes (bench/child.py) against the loopback stand-ins of the wire
tests, with 50 ms added to every remote call; Table Storage is Azurite behind the fault gate, so its
calls get the same latency. Remote calls are counted from the stand-ins' request log. Each case runs
several times; the table gives the median and the minimum.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from loopback import Azurite, StandIns
from loopback.stack import environ_without_routing
from loopback.table_gate import TableGate

from .pages import measure_pages
from .report import Row, render

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.05
MAX_PARALLEL = 16


class Bench:
    def __init__(self, standins: StandIns, gate: TableGate, azurite: Azurite, repeats: int):
        self.standins, self.gate, self.azurite, self.repeats = standins, gate, azurite, repeats
        self.settings = {
            **standins.app_settings(),
            "AzureWebJobsStorage": gate.connection_string(azurite.connection_string),
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "aml_compute_instance": "*",
            "func_cancel_shutdown": "https://bench.example.net/api/CancelShutDown?code=bench-key",
            "from_email": "noreply@contoso.com",
            "to_emails": "ml-team@contoso.com",
            "cancel_link_secret": "bench-" + "s" * 40,
            "time_zone": "Europe/Berlin",
            "mail_schedule": "0 0 17 * * *",
            "shutdown_schedule": "0 0 19 * * *",
            "max_parallel": str(MAX_PARALLEL),
        }

    def child(self, what: str, **settings: str) -> dict:
        env = environ_without_routing(os.environ)
        env.pop("TZ", None)  # schedules in UTC, as on a default Function App
        env.update(self.standins.env)
        env.update({**self.settings, **settings})
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", what],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.child {what} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def fleet(self, n: int, owners: int = 0) -> None:
        self.standins.reset()
        for i in range(n):
            owner = f"owner{i % owners:02d}@contoso.com" if owners else "alice@contoso.com"
            self.standins.azureml.seed(f"ci-{i:04d}", "Running", created_by=owner)
        self.standins.latency = LATENCY

    def sweep(self, n: int) -> Row:
        walls, rss, calls, queries, in_flight = [], [], [], [], []
        for _ in range(self.repeats):
            self.fleet(n)
            result = self.child("sweep")
            stopped = self.standins.stopped_names()
            assert len(stopped) == n, f"the sweep stopped {len(stopped)} of {n}"
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            queries.append(self.standins.count("table", "GET"))
            calls.append(
                len(self.standins.log) - self.standins.count("table")
            )  # the Table query: its own target
            in_flight.append(self.standins.max_in_flight("arm", "POST", r"/stop$"))
        checks = {
            f"wall <= {5 if n <= 300 else 15} s": statistics.median(walls) <= (5 if n <= 300 else 15),
            f"calls <= 2N+15 = {2 * n + 15}": max(calls) <= 2 * n + 15,
            "one Table query": set(queries) == {1},
            f"stops in flight <= max_parallel ({MAX_PARALLEL}): {max(in_flight)}": max(in_flight)
            <= MAX_PARALLEL,
        }
        if n >= 1000:
            checks["peak RSS <= 250 MB"] = max(rss) <= 250
        return Row(f"ComputeShutdown, {n} running", n, walls, max(calls), max(rss), checks)

    def mail(self, n: int, owners: int) -> Row:
        walls, rss, calls, sends = [], [], [], []
        for _ in range(self.repeats):
            self.fleet(n, owners)
            result = self.child("mail", notify_instance_owner="true")
            recipients = {
                t["email"]
                for m in self.standins.sendgrid.outbox
                for p in m["personalizations"]
                for t in p["to"]
            }
            assert len(recipients) == owners + 1, (
                f"{len(recipients)} recipients mailed, expected {owners + 1}"
            )
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            calls.append(len(self.standins.log) - self.standins.count("table"))
            sends.append(self.standins.count("sendgrid", "POST"))
        checks = {
            "wall <= 5 s": statistics.median(walls) <= 5,
            f"one SendGrid call per recipient ({owners + 1})": set(sends) == {owners + 1},
        }
        return Row(
            f"MailSender, {n} instances, {owners} owners + 1 team address",
            n,
            walls,
            max(calls),
            max(rss),
            checks,
        )

    def load(self) -> Row:
        results = [self.child("load") for _ in range(max(5, self.repeats))]
        ms = [r["ms"] / 1000 for r in results]
        sdks = sorted({s for r in results for s in r["sdks"]})
        imported = "no Azure/SendGrid SDK imported" + (f" (found: {', '.join(sdks)})" if sdks else "")
        checks = {"<= 150 ms beyond azure.functions": statistics.median(ms) <= 0.150, imported: not sdks}
        return Row("Loading CancelShutDown in a fresh process", 1, ms, 0, None, checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    azurite = Azurite()
    with StandIns() as standins:
        try:
            azurite.start()
            with TableGate(azurite.port, standins.traffic) as gate:
                bench = Bench(standins, gate, azurite, args.repeats)
                rows = [bench.sweep(300), bench.sweep(1000), bench.mail(300, 30), bench.load()]
                standins.latency = 0.0
                rows += measure_pages(bench.settings, azurite.connection_string, samples=300)
        finally:
            azurite.cleanup()
    context = (
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{LATENCY * 1000:.0f} ms added to every remote call, max_parallel {MAX_PARALLEL}, {args.repeats} runs per case"
    )
    table = render(rows, context)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table, encoding="utf-8")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
