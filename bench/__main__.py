"""python -m bench: measure the targets of docs/benchmarks.md and write that file.

The app runs unchanged in fresh processes (bench/child.py) against the loopback stand-ins of the wire
tests, with 50 ms added to every remote call; Table Storage is Azurite behind the fault gate, so its
calls get the same latency. Remote calls are counted from the stand-ins' request log. Each case runs
several times; the table gives the median and the minimum.

The timers tick on the real clock and ask the app's calendar what is due, so each run chooses
`shutdown_time` (local, in ZONE) to put "now" where the case needs it: inside the sweep's catch-up
window, inside the mail's warning window, or outside every window. Each night's mail run and sweep is
claimed in the ledger, so every run gets a table of its own (created beforehand, as it exists after the
first night in Azure).

    python -m bench            # the full table -> docs/benchmarks.md
    python -m bench --quick    # small N, one run each, printed only: a smoke test of the bench itself
    python -m bench --cases sweep --sweep 300    # one case again, printed only
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from azure.cosmosdb.table.tableservice import TableService

from loopback import Azurite, StandIns
from loopback.stack import environ_without_routing
from loopback.table_gate import TableGate
from shared.domain import Night
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.table_ledger import TableCancelLedger

from .pages import measure_pages
from .report import Row, render

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.05
MAX_PARALLEL = 16
ZONE = "Europe/Berlin"
# Before the listing: Azure AD discovery and token, the subscription check, the workspace, the discovery
# document. Everything else a run sends is counted by kind.
FIXED = 5
SWEEP_TABLE = "read of the night's record, claim (insert), keeps query, 2 saves: keeps honoured, progress"
MAIL_TABLE = "read of the night's record, claim (insert), 1 save"
_LIST = re.compile(r"/computes$")
_READ = re.compile(r"/computes/[^/]+$")
_STOP = re.compile(r"/computes/[^/]+/stop$")


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
            "time_zone": ZONE,
            "max_parallel": str(MAX_PARALLEL),
        }
        self._tables = itertools.count(1)

    # ------------------------------------------------------------------------------ plumbing
    def child(self, what: str, **settings: str) -> dict:
        env = environ_without_routing(os.environ)
        env.pop("TZ", None)  # the host's timers tick in UTC; the app keeps the calendar in time_zone
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

    def ledger(self) -> str:
        """A table of its own for one run: a night's runs are claimed there, so a second run of the same
        night would do nothing. Created directly in Azurite (not through the gate: not counted)."""
        name = f"bench{os.getpid()}x{next(self._tables)}"
        TableService(connection_string=self.azurite.connection_string).create_table(name, fail_on_exist=True)
        return name

    def window(self, case: str) -> dict[str, str]:
        """The settings that put the real clock where `case` needs it, checked with the app's calendar."""
        now = datetime.now(UTC)
        at = {
            "sweep": now,  # shutdown this minute: now is in [S, S + catch_up]
            "mail": now + timedelta(minutes=30),  # now is in [S - warning (60 min), S)
            "idle": now + timedelta(hours=6),  # outside every window, today's and yesterday's
        }[case]
        settings = {"shutdown_time": f"{at.astimezone(ZoneInfo(ZONE)):%H:%M}"}
        calendar = self.calendar(settings)
        due = {"sweep": calendar.sweep_due(now), "mail": calendar.mail_due(now)}
        if case == "idle":
            later = now + timedelta(minutes=5)
            for instant in (now, later):
                busy = (
                    calendar.mail_due(instant) or calendar.sweep_due(instant) or calendar.audit_due(instant)
                )
                assert busy is None, f"something is due at {instant} with {settings}"
        else:
            assert due[case] is not None, f"the {case} is not due at {now} with {settings} (DST gap?)"
        return settings

    def calendar(self, settings: dict[str, str]) -> ShutdownCalendar:
        parsed = Settings.from_environ({**self.settings, **settings})
        return ShutdownCalendar(parsed.target(), parsed.calendar_rules())

    def night_record(self, table: str, night: Night, kind: str):
        return TableCancelLedger(self.azurite.connection_string, table).night_record(night, kind)

    def remote(self) -> list:
        return [r for r in self.standins.log if r.service != "table"]

    # ------------------------------------------------------------------------------ cases
    def sweep(self, n: int) -> Row:
        per_listing = math.ceil(n / self.standins.azureml.page_size)
        walls, rss, calls, tables, in_flight, relists, over = [], [], [], [], [], [], []
        again: tuple[int, int] | None = None
        for _ in range(self.repeats):
            table = self.ledger()
            self.fleet(n)
            settings = {**self.window("sweep"), "cancel_table": table}
            night = self.calendar(settings).sweep_due(datetime.now(UTC))
            result = self.child("sweep", **settings)
            stopped = self.standins.stopped_names()
            assert len(stopped) == n, f"the sweep stopped {len(stopped)} of {n}"
            record = self.night_record(table, night, "sweep")
            assert record is not None and record.state == "done" and len(record.done) == n, record
            remote = self.remote()
            pages = [r for r in remote if r.method == "GET" and _LIST.search(r.path)]
            listings = sum(1 for r in pages if "$skipToken" not in r.query)
            assert len(pages) == per_listing * listings, (len(pages), per_listing, listings)
            reads = sum(1 for r in remote if r.method == "GET" and _READ.search(r.path))
            posts = sum(1 for r in remote if r.method == "POST" and _STOP.search(r.path))
            assert reads == posts == n, f"{reads} reads and {posts} stops for {n} instances"
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            calls.append(len(remote))
            relists.append(listings - 1)
            over.append(len(remote) - (2 * n + per_listing * listings + FIXED))
            tables.append(self.standins.count("table"))
            in_flight.append(self.standins.max_in_flight("arm", "POST", _STOP.pattern))
            if again is None:  # the next tick of the same night: it reads the finished record, nothing else
                self.standins.traffic.clear_log()
                self.child("sweep", **settings)
                again = (self.standins.count("table"), len(self.remote()))
        worst = max(range(len(calls)), key=lambda i: over[i])
        next_table, next_remote = again or (-1, -1)
        bound = 2 * n + per_listing * (1 + relists[worst]) + FIXED
        checks = {
            f"wall <= {5 if n <= 300 else 15} s": statistics.median(walls) <= (5 if n <= 300 else 15),
            f"calls <= 2N + {per_listing}·(1 + relists) + {FIXED}; relists {'/'.join(map(str, relists))}: "
            f"{calls[worst]} <= {bound}": max(over) <= 0,
            f"Table calls = 5 ({SWEEP_TABLE}): {'/'.join(map(str, tables))}": set(tables) == {5},
            f"next tick of that night: 1 Table read, 0 remote calls: {next_table}, {next_remote}": again
            == (1, 0),
            f"stops in flight <= max_parallel ({MAX_PARALLEL}): {max(in_flight)}": max(in_flight)
            <= MAX_PARALLEL,
        }
        if n >= 1000:
            checks["peak RSS <= 250 MB"] = max(rss) <= 250
        return Row(f"ComputeShutdown, {n} running", n, walls, max(calls), max(rss), checks)

    def mail(self, n: int, owners: int) -> Row:
        per_listing = math.ceil(n / self.standins.azureml.page_size)
        walls, rss, calls, sends, tables = [], [], [], [], []
        for _ in range(self.repeats):
            table = self.ledger()
            self.fleet(n, owners)
            settings = {**self.window("mail"), "cancel_table": table, "notify_instance_owner": "true"}
            night = self.calendar(settings).mail_due(datetime.now(UTC))
            result = self.child("mail", **settings)
            recipients = {
                t["email"]
                for m in self.standins.sendgrid.outbox
                for p in m["personalizations"]
                for t in p["to"]
            }
            assert len(recipients) == owners + 1, (
                f"{len(recipients)} recipients mailed, expected {owners + 1}"
            )
            record = self.night_record(table, night, "mail")
            assert record is not None and record.state == "done" and len(record.done) == owners + 1, record
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            calls.append(len(self.remote()))
            sends.append(self.standins.count("sendgrid", "POST"))
            tables.append(self.standins.count("table"))
        bound = FIXED + per_listing + owners + 1
        checks = {
            "wall <= 5 s": statistics.median(walls) <= 5,
            f"one SendGrid call per recipient ({owners + 1})": set(sends) == {owners + 1},
            f"calls <= {FIXED} + ⌈N/page⌉ + recipients = {bound}": max(calls) <= bound,
            f"Table calls = 3 ({MAIL_TABLE}): {'/'.join(map(str, tables))}": set(tables) == {3},
        }
        return Row(
            f"MailSender, {n} instances, {owners} owners + 1 team address",
            n,
            walls,
            max(calls),
            max(rss),
            checks,
        )

    def idle(self, n: int) -> Row:
        """Both timers' main() at a time outside every window: most of the 288 ticks of a day."""
        firsts, warms, rss, calls, sdks = [], [], [], [], set()
        for _ in range(self.repeats):
            self.fleet(n)
            result = self.child("idle", **self.window("idle"), cancel_table=self.ledger())
            firsts.append(result["first"])
            warms.append(result["warm_p50"])
            rss.append(result["rss_mb"])
            sdks.update(result["sdks"])
            calls.append(len(self.standins.log))  # Table included
        imported = "no Azure/SendGrid SDK imported" + (f" (found: {', '.join(sorted(sdks))})" if sdks else "")
        checks = {
            f"0 remote calls, Table included: {max(calls)}": max(calls) == 0,
            imported: not sdks,
            "first tick <= 10 ms": statistics.median(firsts) <= 0.010,
            "warm tick p50 <= 1 ms": statistics.median(warms) <= 0.001,
        }
        timing = (
            f"first in a fresh process {_t(statistics.median(firsts))} ({_t(min(firsts))}); "
            f"warm p50 {_t(statistics.median(warms))}"
        )
        return Row(
            "A tick with nothing due: MailSender + ComputeShutdown main()",
            n,
            firsts,
            0,
            max(rss),
            checks,
            timing=timing,
        )

    def load(self, what: str, case: str) -> Row:
        results = [self.child(what) for _ in range(max(5, self.repeats))]
        ms = [r["ms"] / 1000 for r in results]
        sdks = sorted({s for r in results for s in r["sdks"]})
        imported = "no Azure/SendGrid SDK imported" + (f" (found: {', '.join(sdks)})" if sdks else "")
        checks = {"<= 150 ms beyond azure.functions": statistics.median(ms) <= 0.150, imported: not sdks}
        return Row(case, 1, ms, None, None, checks)


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


CASES = ("sweep", "mail", "idle", "load", "pages")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per case (3; --quick: 1)")
    parser.add_argument(
        "--quick", action="store_true", help="small N, printed only: checks that the bench works"
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated subset of {','.join(CASES)} (a subset is printed only, unless --output)",
    )
    parser.add_argument("--sweep", type=int, action="append", help="sweep sizes instead of 300 and 1000")
    parser.add_argument(
        "--output", type=Path, default=None, help="default docs/benchmarks.md (--quick, --cases: none)"
    )
    args = parser.parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))} (choose from {', '.join(CASES)})")
    repeats = args.repeats or (1 if args.quick else 3)
    partial = args.quick or args.sweep or set(cases) != set(CASES)
    output = args.output or (None if partial else ROOT / "docs" / "benchmarks.md")
    sweeps, (mail_n, owners), samples = (
        ((30, 120), (60, 6), 50) if args.quick else ((300, 1000), (300, 30), 300)
    )
    sweeps = tuple(args.sweep or sweeps)
    rows: list[Row] = []
    azurite = Azurite()
    with StandIns() as standins:
        try:
            azurite.start()
            with TableGate(azurite.port, standins.traffic) as gate:
                bench = Bench(standins, gate, azurite, repeats)
                if "sweep" in cases:
                    rows += [bench.sweep(n) for n in sweeps]
                if "mail" in cases:
                    rows.append(bench.mail(mail_n, owners))
                if "idle" in cases:
                    rows.append(bench.idle(max(sweeps)))
                if "load" in cases:
                    rows.append(bench.load("load", "Loading CancelShutDown in a fresh process"))
                    rows.append(
                        bench.load("load-timers", "Loading MailSender and ComputeShutdown in a fresh process")
                    )
                if "pages" in cases:
                    standins.latency = 0.0
                    pages = {**bench.settings, **bench.window("idle"), "cancel_table": bench.ledger()}
                    rows += measure_pages(pages, azurite.connection_string, samples=samples)
        finally:
            azurite.cleanup()
    context = (
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{LATENCY * 1000:.0f} ms added to every remote call, max_parallel {MAX_PARALLEL}, "
        f"time_zone {ZONE}, {repeats} run{'s' if repeats > 1 else ''} per case"
    )
    table = render(rows, context)
    print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table, encoding="utf-8")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
