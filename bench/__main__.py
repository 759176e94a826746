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

The sweeps run once with each compute client the App Setting `compute_api` chooses (`azureml-core`,
`arm`), in the same run and against the same stand-ins; the bucket case runs the ARM client against a
stand-in that enforces ARM's write bucket. The estate case (bench/estate.py) sweeps 10 workspaces of
100 running instances each, found through `aml_workspaces` entries `subscription_id/*`, with both clients,
in 5 subscriptions and in one.

    python -m bench            # the full table -> docs/benchmarks.md
    python -m bench --quick    # small N, one run each, printed only: a smoke test of the bench itself
    python -m bench --cases sweep --sweep 300 --api arm    # one case again, printed only
    python -m bench --cases bucket --bucket 5000           # the write-bucket case alone
    python -m bench --cases estate --estate spread         # 10 workspaces in 5 subscriptions, both APIs
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
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from azure.cosmosdb.table.tableservice import TableService

from loopback import Azurite, StandIns
from loopback.stack import environ_without_routing
from loopback.table_gate import TableGate
from shared.arm_pacing import ARM_WRITE_CAPACITY, ARM_WRITES_PER_SECOND, WRITE_HEADROOM
from shared.domain import Night
from shared.host_config import function_timeout, stop_budget
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.table_ledger import TableCancelLedger

from .child import WRITE_RATE
from .estate import NIGHT_ROW, ONE_SUBSCRIPTION, PRICE_CACHE, SPREAD, Layout, estate
from .notes import INTRO, notes
from .pages import measure_pages
from .report import Row, render, short_error

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.05
# What a new TLS connection costs on top (TCP + TLS handshakes to an Azure front door nearby): charged by
# the stand-ins for every connection a client opens, so that not reusing connections is not free.
CONNECTION_COST = 0.02
MAX_PARALLEL = 16
ZONE = "Europe/Berlin"
COMPUTE_APIS = ("azureml-core", "arm")
# azureml-core, before the listing: Azure AD discovery and token, the subscription check, the workspace,
# the discovery document. Everything else a run sends is counted by kind.
FIXED = 5
# The ARM client's targets allow 3 calls besides the listing pages and one per stop (it sends 2: Azure
# AD's discovery and the token; 1 with the managed identity).
ARM_FIXED = 3
# The ARM client's own bucket (shared/arm_pacing.py): ARM's 200 less the 20 it keeps in reserve.
CLIENT_BUCKET = ARM_WRITE_CAPACITY - WRITE_HEADROOM
# The bucket case: a stand-in bucket of ARM's capacity whose refill is sped up to this many writes per
# second (ARM: 10), and the client's pacing with it, so that 5,000 stops take minutes, not 8. Not faster:
# while the whole fleet is listed again (about 5 s for 5,000 instances, 50 pages), a bucket refilled
# faster than 180 / 5 s = 36/s would fill up and waste writes, which ARM's real 10/s never does.
BUCKET_RATE = 30.0
SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
SWEEP_TABLE = "read of the night's record, claim (insert), keeps query, 2 saves: keeps honoured, progress"
SWEEP_TABLE_CALLS = 5  # SWEEP_TABLE, per workspace
MAIL_TABLE = "read of the night's record, claim (insert), 1 save"
_LIST = re.compile(r"/computes$")
_READ = re.compile(r"/computes/[^/]+$")
_STOP = re.compile(r"/computes/[^/]+/stop$")


class Bench:
    def __init__(
        self, standins: StandIns, gate: TableGate, azurite: Azurite, repeats: int, home: str | None = None
    ):
        self.standins, self.gate, self.azurite, self.repeats = standins, gate, azurite, repeats
        self.home = home  # the children's HOME: see child()
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
        self.errors: list[str] = []  # of the runs that failed, for the notes

    # ------------------------------------------------------------------------------ plumbing
    def child(self, what: str, managed_identity: bool = False, **settings: str) -> dict:
        """`what` in a fresh process. `managed_identity`: no service principal settings; the app signs
        in as the Function App's managed identity (the stand-in's endpoint, as App Service sets it)."""
        env = environ_without_routing(os.environ)
        env.pop("TZ", None)  # the host's timers tick in UTC; the app keeps the calendar in time_zone
        if self.home:
            # azureml-core caches every workspace's service discovery in ~/.azureml/.discovery and reads
            # and rewrites the whole file for each look-up. A deployment's workspaces keep their ids, so
            # there it stays small; the stand-in gives its workspaces new ids on every reset, so on a
            # developer's machine it grows with every test and bench run ever made (1 MB, 1,200 entries,
            # here), which the app would not see in Azure. One HOME per bench keeps it as in a deployment.
            env["HOME"] = self.home
        env.update(self.standins.env)
        env.update({**self.settings, **settings})
        if managed_identity:
            for name in SP_SETTINGS:
                env.pop(name, None)
            env.update(self.standins.identity_env)
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", what],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.child {what} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def fleet(self, n: int, owners: int = 0) -> None:
        self.standins.reset()  # also: no write bucket, no connection cost, connection count 0
        for i in range(n):
            owner = f"owner{i % owners:02d}@contoso.com" if owners else "alice@contoso.com"
            self.standins.azureml.seed(f"ci-{i:04d}", "Running", created_by=owner)
        self.network()

    def network(self) -> None:
        """What the network costs: every remote call, every new TLS connection (after a reset)."""
        self.standins.latency = LATENCY
        self.standins.connection_cost = CONNECTION_COST

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
    def sweep(self, n: int, api: str) -> Row:
        """ComputeShutdown over `n` running instances with the compute client `api`."""
        arm = api == "arm"
        per_listing = math.ceil(n / self.standins.azureml.page_size)
        floor = client_floor(n, ARM_WRITES_PER_SECOND)
        runs = 1 if arm and floor > 30 else self.repeats  # paced runs are long, and all alike
        walls, rss, calls, tables, in_flight, relists, over = [], [], [], [], [], [], []
        stopped, connections, cpu, errors, priced, report = [], [], [], [], [], []
        again: tuple[int, int] | None = None
        for _ in range(runs):
            table = self.ledger()
            self.fleet(n)
            settings = {**self.window("sweep"), "cancel_table": table, "compute_api": api}
            night = self.calendar(settings).sweep_due(datetime.now(UTC))
            result = self.child("sweep", **settings)
            # The morning-after report's costs (prices, rows, price cache) come after the stops: shown
            # beside the targets, not counted in them (see estate.py).
            priced.append(self.standins.count("prices"))
            remote = [r for r in self.remote() if r.service != "prices"]
            pages = [r for r in remote if r.method == "GET" and _LIST.search(r.path)]
            listings = sum(1 for r in pages if "$skipToken" not in r.query)
            assert len(pages) == per_listing * listings, (len(pages), per_listing, listings)
            reads = sum(1 for r in remote if r.method == "GET" and _READ.search(r.path))
            posts = sum(1 for r in remote if r.method == "POST" and _STOP.search(r.path))
            stopped.append(len(self.standins.stopped_names()))
            if result["error"] is None:
                assert stopped[-1] == n, f"the sweep stopped {stopped[-1]} of {n} and did not fail"
                record = self.night_record(table, night, "sweep")
                assert record is not None and record.state == "done" and len(record.done) == n, record
                assert posts == n and reads == (0 if arm else n), f"{reads} reads, {posts} stops for {n}"
            else:
                errors.append(result["error"])
                self.errors.append(result["error"])
            walls.append(result["wall"])
            rss.append(result["rss_mb"])
            calls.append(len(remote))
            connections.append(self.standins.connections)
            cpu.append(result["cpu"] * 1000 / max(1, len(remote)))
            relists.append(listings - 1)
            # The bound for `arm` has no room for relists; azureml-core's counts them.
            bound = n + per_listing + ARM_FIXED if arm else 2 * n + per_listing * listings + FIXED
            over.append(len(remote) - bound)
            table_calls = self.standins.records("table")
            rows = sum(1 for r in table_calls if NIGHT_ROW.search(r.path))
            cache = sum(1 for r in table_calls if PRICE_CACHE.search(r.path))
            tables.append(len(table_calls) - rows - cache)
            report.append((rows, cache))
            in_flight.append(self.standins.max_in_flight("arm", "POST", _STOP.pattern))
            if again is None and result["error"] is None:  # the next tick of the same night: one read
                self.standins.traffic.clear_log()
                self.child("sweep", **settings)
                again = (self.standins.count("table"), len(self.remote()))
        worst = max(range(len(calls)), key=lambda i: over[i])
        next_table, next_remote = again or (-1, -1)
        checks = {
            f"every instance stopped, the run succeeded: {'/'.join(map(str, stopped))} of {n}"
            + (f" ({short_error(errors[0])})" if errors else ""): not errors and set(stopped) == {n},
        }
        waived: dict[str, str] = {}
        if arm:
            wall_target, bound = (2.0 if n <= 300 else 5.0), n + per_listing + ARM_FIXED
            wall = f"wall <= {wall_target:.1f} s"
            checks[wall] = statistics.median(walls) <= wall_target
            if floor > wall_target:  # out of reach for any client that does not provoke 429s: see notes
                waived[wall] = f"below the floor of ARM's write bucket, {floor:.0f} s"
            if n <= 300:
                bounded = f"calls <= N + ⌈N/page⌉ + {ARM_FIXED} = {bound}: {calls[worst]}"
                checks[bounded] = max(over) <= 0
                if max(over) <= per_listing * relists[worst]:  # over by the relists' pages, no more
                    waived[bounded] = "the bound has no room for the relists the paced stops need"
            else:
                checks[f"calls / instance <= 1.1: {max(calls) / n:.2f}"] = max(calls) <= 1.1 * n
                checks[f"connections <= max_parallel + 2 = {MAX_PARALLEL + 2}: {max(connections)}"] = (
                    max(connections) <= MAX_PARALLEL + 2
                )
                checks[f"peak RSS <= 80 MB: {max(rss):.0f} MB"] = max(rss) <= 80
        else:
            wall_target = 5 if n <= 300 else 15
            bound = 2 * n + per_listing * (1 + relists[worst]) + FIXED
            checks[f"wall <= {wall_target} s"] = statistics.median(walls) <= wall_target
            if floor > wall_target:  # azureml-core's stops are paced by the same bucket as the ARM client's
                waived[f"wall <= {wall_target} s"] = f"below the floor of ARM's write bucket, {floor:.0f} s"
            checks[f"calls <= 2N + {per_listing}·(1 + relists) + {FIXED}: {calls[worst]} <= {bound}"] = (
                max(over) <= 0
            )
            if n >= 1000:
                checks[f"peak RSS <= 250 MB: {max(rss):.0f} MB"] = max(rss) <= 250
        checks[f"Table calls = {SWEEP_TABLE_CALLS} ({SWEEP_TABLE}): {'/'.join(map(str, tables))}"] = set(
            tables
        ) == {SWEEP_TABLE_CALLS}
        if again is not None:
            checks[f"next tick of that night: 1 Table read, 0 remote calls: {next_table}, {next_remote}"] = (
                again == (1, 0)
            )
        checks[f"stops in flight <= max_parallel ({MAX_PARALLEL}): {max(in_flight)}"] = (
            max(in_flight) <= MAX_PARALLEL
        )
        info = f"relists {'/'.join(map(str, relists))}"
        info += (
            f"; besides, for the report: {max(r for r, _ in report)} Table rows, "
            f"{max(c for _, c in report)} price-cache calls, {max(priced)} Retail Prices look-ups"
        )
        if arm:
            info += (
                f"; ARM's write bucket alone takes (N - {CLIENT_BUCKET}) / {ARM_WRITES_PER_SECOND:g} = "
                f"{floor:.1f} s for N stops; {runs} run{'s' if runs > 1 else ''}"
            )
        return Row(
            f"ComputeShutdown, {n} running, `compute_api={api}`",
            n,
            walls,
            max(calls),
            max(rss),
            checks,
            connections=max(connections),
            cpu_ms_per_call=statistics.median(cpu),
            info=info,
            incomplete=bool(errors),
            waived=waived,
        )

    def estate(self, layout: Layout, api: str) -> Row:
        """ComputeShutdown over many workspaces (`aml_workspaces`): bench/estate.py."""
        return estate(self, layout, api, SWEEP_TABLE_CALLS)

    def bucket(self, n: int, rate: float) -> Row:
        """`n` stops with the ARM client against ARM's write bucket (capacity 200), refilled at `rate`
        writes/s, the client's pacing at the same rate; signed in as the managed identity."""
        table = self.ledger()
        self.fleet(n)
        self.standins.enforce_write_bucket(ARM_WRITE_CAPACITY, rate)
        settings = {**self.window("sweep"), "cancel_table": table, "compute_api": "arm"}
        result = self.child("sweep", managed_identity=True, **settings, **{WRITE_RATE: f"{rate:g}"})
        remote = self.remote()
        stopped = len(self.standins.stopped_names())
        throttled = self.standins.count("arm", "POST", _STOP.pattern, status=429)
        signed_in = self.standins.count("identity") + self.standins.count("aad")
        listings = sum(1 for r in remote if _LIST.search(r.path) and "$skipToken" not in r.query)
        floor = bucket_floor(n, ARM_WRITE_CAPACITY, rate)
        error = result["error"]
        if error:
            self.errors.append(error)
        checks = {
            f"every instance stopped in one run: {stopped} of {n}"
            + (f" ({short_error(error)})" if error else ""): (stopped == n and error is None),
            f"0 × 429 received: {throttled}": throttled == 0,
            f"wall <= 1.1 × the bucket's floor (N - {ARM_WRITE_CAPACITY}) / {rate:g} = {floor:.1f} s: "
            f"<= {1.1 * floor:.1f} s": stopped == n and result["wall"] <= 1.1 * floor,
        }
        real = client_floor(n, ARM_WRITES_PER_SECOND)
        budget = stop_budget()
        info = (
            f"stand-in bucket {ARM_WRITE_CAPACITY} writes + {rate:g}/s, client pacing {CLIENT_BUCKET} + "
            f"{rate:g}/s: its floor {client_floor(n, rate):.1f} s; {listings - 1} relists; "
            f"{signed_in} token request(s), managed identity; at ARM's real {ARM_WRITES_PER_SECOND:g}/s "
            f"the client needs (N - {CLIENT_BUCKET}) / {ARM_WRITES_PER_SECOND:g} = {real:.0f} s of stops, "
            f"the stop budget is {budget:.0f} s (functionTimeout {function_timeout() / 60:.0f} min - "
            f"{function_timeout() - budget:.0f} s): "
            + ("fits" if real <= budget else f"does NOT fit in one run (at most {max_stops(budget):,})")
        )
        return Row(
            f"ComputeShutdown, {n} running, `compute_api=arm`, managed identity, against ARM's write bucket "
            f"({ARM_WRITE_CAPACITY} writes, refilled at {rate:g}/s = {rate / ARM_WRITES_PER_SECOND:g} × ARM's)",
            n,
            [result["wall"]],
            len(remote),
            result["rss_mb"],
            checks,
            connections=self.standins.connections,
            cpu_ms_per_call=result["cpu"] * 1000 / max(1, len(remote)),
            info=info,
            incomplete=stopped != n or error is not None,
        )

    def mail(self, n: int, owners: int) -> Row:
        per_listing = math.ceil(n / self.standins.azureml.page_size)
        walls, rss, calls, sends, tables = [], [], [], [], []
        for _ in range(self.repeats):
            table = self.ledger()
            self.fleet(n, owners)
            settings = {**self.window("mail"), "cancel_table": table, "notify_instance_owner": "true"}
            night = self.calendar(settings).mail_due(datetime.now(UTC))
            result = self.child("mail", **settings)
            assert result["error"] is None, f"MailSender failed: {result['error']}"
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

    def load_adapter(self, api: str) -> Row:
        """MailSender and ComputeShutdown loaded and the compute adapter built (its SDK imported, its
        credential made; no remote call): what a run does before its first call, beyond the worker."""
        results = [self.child("load-adapter", compute_api=api) for _ in range(max(5, self.repeats))]
        ms = [r["ms"] / 1000 for r in results]
        azureml = any("azureml" in r["sdks"] for r in results)
        checks = {}
        if api == "arm":
            checks = {
                "<= 150 ms beyond azure.functions": statistics.median(ms) <= 0.150,
                "azureml-core not imported" + (" (found)" if azureml else ""): not azureml,
            }
        return Row(
            f"Loading MailSender and ComputeShutdown and building the compute adapter, `compute_api={api}`, "
            "in a fresh process",
            1,
            ms,
            None,
            None,
            checks,
            info=None if checks else f"azureml-core imported: {'yes' if azureml else 'no'}",
        )


def client_floor(n: int, rate: float) -> float:
    """Seconds the ARM client's pacing alone needs for `n` stops: its bucket (ARM's capacity less the
    headroom) goes at once, every further stop waits for a token at `rate` per second."""
    return bucket_floor(n, CLIENT_BUCKET, rate)


def bucket_floor(n: int, capacity: int, rate: float) -> float:
    """Seconds before a bucket of `capacity` refilled at `rate`/s can have let `n` writes through."""
    return max(0, n - capacity) / rate


def max_stops(seconds: float, rate: float = ARM_WRITES_PER_SECOND) -> int:
    """The most stops the ARM client's pacing lets through in `seconds`."""
    return CLIENT_BUCKET + int(rate * seconds)


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


CASES = ("sweep", "estate", "bucket", "mail", "idle", "load", "pages")
LAYOUTS = {"spread": SPREAD, "one-subscription": ONE_SUBSCRIPTION}


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
        "--api",
        action="append",
        choices=COMPUTE_APIS,
        help="compute_api of the sweeps and loads (default: both)",
    )
    parser.add_argument(
        "--estate",
        action="append",
        choices=tuple(LAYOUTS),
        help="layouts of the estate case: 10 workspaces × 100 running in 5 subscriptions, or in one "
        "(default: both; --quick: 4 × 20 in 2)",
    )
    parser.add_argument("--bucket", type=int, default=None, help="instances of the bucket case (5000)")
    parser.add_argument(
        "--bucket-rate",
        type=float,
        default=BUCKET_RATE,
        help=f"the bucket case's refill, writes/s (default {BUCKET_RATE:g}; ARM's: {ARM_WRITES_PER_SECOND:g})",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="default docs/benchmarks.md (--quick, --cases: none)"
    )
    args = parser.parse_args(argv)
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))} (choose from {', '.join(CASES)})")
    repeats = args.repeats or (1 if args.quick else 3)
    apis = tuple(args.api or COMPUTE_APIS)
    partial = (
        args.quick
        or args.sweep
        or args.bucket
        or args.api
        or args.estate
        or args.bucket_rate != BUCKET_RATE
        or set(cases) != set(CASES)
    )
    output = args.output or (None if partial else ROOT / "docs" / "benchmarks.md")
    sweeps, bucket_n, (mail_n, owners), samples = (
        ((30, 120), 1000, (60, 6), 50) if args.quick else ((300, 1000), 5000, (300, 30), 300)
    )
    sweeps = tuple(args.sweep or sweeps)
    bucket_n = args.bucket or bucket_n
    layouts = [LAYOUTS[name] for name in args.estate or LAYOUTS]
    if args.quick and not args.estate:
        layouts = [Layout(2, 2, 20)]
    rows: list[Row] = []
    errors: list[str] = []
    started = datetime.now(UTC)
    load = os.getloadavg()[0]  # anything else running on the machine slows every row: say so
    azurite = Azurite()
    with StandIns() as standins, tempfile.TemporaryDirectory(prefix="bench-home-") as home:
        try:
            azurite.start()
            with TableGate(azurite.port, standins.traffic) as gate:
                bench = Bench(standins, gate, azurite, repeats, home)
                errors = bench.errors
                if "sweep" in cases:
                    rows += [bench.sweep(n, api) for n in sweeps for api in apis]
                if "estate" in cases:
                    rows += [bench.estate(layout, api) for layout in layouts for api in apis]
                if "bucket" in cases:
                    rows.append(bench.bucket(bucket_n, args.bucket_rate))
                if "mail" in cases:
                    rows.append(bench.mail(mail_n, owners))
                if "idle" in cases:
                    rows.append(bench.idle(max(sweeps)))
                if "load" in cases:
                    rows.append(bench.load("load", "Loading CancelShutDown in a fresh process"))
                    rows.append(
                        bench.load("load-timers", "Loading MailSender and ComputeShutdown in a fresh process")
                    )
                    rows += [bench.load_adapter(api) for api in apis]
                if "pages" in cases:
                    standins.latency = 0.0
                    standins.connection_cost = 0.0
                    pages = {**bench.settings, **bench.window("idle"), "cancel_table": bench.ledger()}
                    rows += measure_pages(pages, azurite.connection_string, samples, standins.traffic)
        finally:
            azurite.cleanup()
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    context = (
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{LATENCY * 1000:.0f} ms added to every remote call, {CONNECTION_COST * 1000:.0f} ms to every new "
        f"TLS connection, max_parallel {MAX_PARALLEL}, time_zone {ZONE}, "
        f"{repeats} run{'s' if repeats > 1 else ''} per case unless a row says otherwise; "
        f"the whole bench took {minutes:.1f} min; load average {load:.2f} at its start, "
        f"{os.getloadavg()[0]:.2f} at its end"
    )
    table = render(rows, context, INTRO, notes(args.bucket_rate, errors))
    print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table, encoding="utf-8")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
