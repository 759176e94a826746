"""`make run` in a fresh process: the demo walkthrough, following the steps the demo prints, over HTTP.

The demo's shutdown is normally three minutes or so after start. Here it comes `--shutdown-in` 25 s (at
the first whole minute after that, since shutdown_time is HH:MM), so the walkthrough does what is due
before the shutdown, then waits for the printed instant and runs the printed admin call: at most about
85 s of waiting, about 55 s on average, for the whole module.
"""

import html
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devhost.demo import shutdown_instant
from tests.e2e.conftest import ROOT, DevHost

LEAD = 25  # seconds from start to the earliest shutdown: start, mail, click and an early call fit in
POLL = 0.6  # the demo tells the stand-ins' state changes within 0.2 s; wait a little longer before "nothing"
TEAM = "ml-team@contoso.com"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    host = DevHost(tmp_path_factory.mktemp("outbox"), shutdown_in=LEAD)
    try:
        yield host
    finally:
        host.stop()


@dataclass(frozen=True)
class Steps:
    """What the printed steps tell a person to do, read back from the console."""

    mail: Path
    click: str
    shutdown_time: str
    sweep_tick: str
    curl: str
    summary: str

    @classmethod
    def printed_by(cls, output: str) -> "Steps":
        def after(label: str) -> str:
            return re.search(re.escape(label) + r"\s*\n\s*(\S.*)", output).group(1).strip()

        return cls(
            mail=Path(after("Open it in a browser:")),
            click=re.search(r'click "([^"]+)"', output).group(1),
            shutdown_time=re.search(r"Wait until (\d\d:\d\d), the shutdown time", output).group(1),
            sweep_tick=re.search(r"the sweep runs by itself at the (\d\d:\d\d) tick", output).group(1),
            curl=after(", run it now:"),
            summary=after("Read the summary line in the console:"),
        )


def follow(host: DevHost, command: str) -> int:
    """Run a printed `curl -X POST <url> -H <header> -d <body>` as it is written, through urllib."""
    words = shlex.split(command)
    assert words[:3] == ["curl", "-X", "POST"] and words[4] == "-H" and words[6] == "-d", command
    name, _, value = words[5].partition(": ")
    mark = len(host.lines)
    status, _, _ = host.request("POST", words[3], words[7].encode(), {name: value})
    if status == 202:
        function = words[3].rsplit("/", 1)[1]
        host.wait_for_line(f"Executed 'Functions.{function}'", after=mark)
    return status


def app_lines(lines: list[str]) -> list[str]:
    """Lines that are not the dev host's own (Host.*): the app's log and the demo's stand-in news."""
    return [line for line in lines if not re.match(r"\[[^]]+\] Host\.", line)]


@pytest.mark.timeout(240)  # waits for the demo's shutdown: up to LEAD + 60 s after the start
def test_the_demo_walkthrough_as_printed(demo):
    steps = Steps.printed_by(demo.output)
    shutdown = demo.shutdown_at
    local = shutdown.astimezone(ZoneInfo(re.search(r"time_zone (\S+),", demo.output).group(1)))
    assert steps.shutdown_time == f"{local:%H:%M}" and shutdown.second == 0
    assert f"ComputeShutdown for the night of {local.date()}: stopped 2, kept by request 1," in steps.summary

    # 1. The mail is in the outbox already, under the name printed; the opted-out instance is not in it.
    assert steps.mail.parent == demo.outbox.resolve() and steps.mail.name.endswith(f"-{TEAM}.html")
    mail = steps.mail.read_text(encoding="utf-8")
    assert "Not stopped: 1 instance opted out with the <code>auto-shutdown</code> tag." in mail
    assert "ci-frank" not in mail and not list(demo.outbox.glob("*-frank@contoso.com.*"))
    assert "SendGrid stand-in accepted a mail to ml-team@contoso.com" in demo.output

    # 2. The link with the printed text opens the confirmation; only the button keeps the instance.
    anchors = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', mail)
    (link,) = [html.unescape(href) for href, text in anchors if text == steps.click]
    assert link.startswith(f"http://localhost:{demo.port}/api/CancelShutDown?token=")
    status, headers, page = demo.request("GET", link)
    assert (
        status == 200
        and '<form method="post" class="choices">' in page
        and headers["Cache-Control"] == "no-store"
    )
    assert 'name="delay" value="60"' in page and 'name="delay" value="night"' in page
    assert 'ws-demo <span class="muted">(resource group rg-demo)</span>' in page
    status, _, page = demo.request("POST", link, b"", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "ci-alice keeps running tonight" in page

    # 3. Before the shutdown time the printed admin call is a tick like any other: it does nothing.
    assert datetime.now(UTC) < shutdown - timedelta(seconds=2), "the demo started too slowly for this test"
    mark = len(demo.lines)
    assert follow(demo, steps.curl) == 202
    time.sleep(POLL)
    assert datetime.now(UTC) < shutdown
    assert app_lines(demo.lines[mark:]) == []  # no summary, no stop, no remote call worth a line
    assert "AzureML stand-in:" not in demo.output  # every instance is as seeded: nothing was stopped

    #    From the shutdown time on, the same call sweeps (or the five-minute tick has, if it came first).
    mark = len(demo.lines)
    time.sleep(max(0.0, (shutdown - datetime.now(UTC)).total_seconds()) + 0.1)
    assert follow(demo, steps.curl) == 202

    # 4. The summary line is the one printed; the stand-in stopped ci-bob and ci-erin, nothing else.
    summary = demo.wait_for_line("ComputeShutdown for the night of", after=mark)
    assert summary.endswith(steps.summary), summary
    assert any("Keeping ci-alice running tonight" in line for line in demo.lines[mark:])
    for name in ("ci-bob", "ci-erin"):
        demo.wait_for_line(f"AzureML stand-in: {name} Running -> Stopping", after=mark)
        demo.wait_for_line(f"AzureML stand-in: {name} Stopping -> Stopped", after=mark)

    #    A second call after the sweep finds the night done: no second sweep, nothing stopped.
    mark = len(demo.lines)
    assert follow(demo, steps.curl) == 202
    time.sleep(POLL)
    assert app_lines(demo.lines[mark:]) == []
    logged = [line for line in demo.lines if line.startswith("[")]  # not the printed steps
    assert sum("ComputeShutdown for the night of" in line for line in logged) == 1
    changed = {m.group(1) for m in re.finditer(r"AzureML stand-in: (\S+) ", demo.output)}
    assert changed == {"ci-bob", "ci-erin"}

    # The dev host never logs a link token, not even for the requests it served.
    token = link.split("token=")[1]
    assert "GET /api/CancelShutDown -> 200" in demo.output and token not in demo.output


def test_the_functions_their_urls_and_the_steps_are_printed(demo):
    out = demo.output
    assert re.search(r"MailSender: timerTrigger, next run \d{4}-", out)
    assert (
        f"CancelShutDown: [DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT] http://localhost:{demo.port}/api/CancelShutDown"
        in out
    )
    for step in ("The mail went out at start", "Open it in a browser", "Wait until", "Read the summary line"):
        assert step in out
    assert re.search(r"Calendar: time_zone \S+, shutdown_time \d\d:\d\d, warning_minutes 60,", out)
    assert "mail_schedule" not in out and "shutdown_schedule" not in out


def test_the_sweep_tick_printed_is_the_first_five_minute_tick_at_or_after_the_shutdown(demo):
    steps = Steps.printed_by(demo.output)
    local = demo.shutdown_at.astimezone(ZoneInfo(re.search(r"time_zone (\S+),", demo.output).group(1)))
    minutes = local.minute + (-local.minute) % 5
    tick = local.replace(minute=0) + timedelta(minutes=minutes)
    assert steps.sweep_tick == f"{tick:%H:%M}"


def test_unknown_functions_and_routes_are_404(demo):
    assert demo.run_timer("NoSuchFunction") == 404
    assert demo.request("GET", f"{demo.base}/api/NoSuchRoute")[0] == 404
    assert demo.request("POST", f"{demo.base}/admin/functions/CancelShutDown", b"{}")[0] == 400


@pytest.mark.parametrize(
    "now, lead, zone, expected",
    [
        ("2026-11-25T16:33:20+00:00", 180, "UTC", "2026-11-25T16:37:00+00:00"),  # next whole minute
        ("2026-11-25T16:34:00+00:00", 180, "UTC", "2026-11-25T16:37:00+00:00"),  # already whole: that one
        ("2026-11-25T23:58:30+00:00", 180, "Europe/Berlin", "2026-11-26T00:02:00+00:00"),  # 01:02 local
        # a spring-forward gap: 02:00 local does not exist; the app reads it as 03:00 CEST, so does the demo
        ("2026-03-29T00:58:30+00:00", 60, "Europe/Berlin", "2026-03-29T01:00:00+00:00"),
        # fall back, in the repeated hour: 02:13 means its first occurrence (past), so 03:00 CET it is
        ("2026-10-25T01:10:00+00:00", 180, "Europe/Berlin", "2026-10-25T02:00:00+00:00"),
    ],
)
def test_the_demo_shutdown_is_the_first_whole_local_minute_after_the_lead(now, lead, zone, expected):
    at = shutdown_instant(datetime.fromisoformat(now), lead, ZoneInfo(zone))
    assert at == datetime.fromisoformat(expected) and at.tzinfo is not None


@pytest.mark.parametrize("value", ["5", "3001", "twenty", "12.5"])
def test_shutdown_in_outside_its_range_is_refused_before_anything_starts(value, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "devhost", "--demo", "--shutdown-in", value, "--outbox", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "--shutdown-in: must be whole seconds from 10 to 3000" in run.stderr
    assert "Traceback" not in run.stderr and list(tmp_path.iterdir()) == []


def test_stopping_the_host_stops_everything_it_started(tmp_path):
    host = DevHost(tmp_path)
    azurite_port = int(re.search(r"Azurite at http://127\.0\.0\.1:(\d+)", host.output).group(1))
    assert host.stop() == 0
    assert "Stopping..." in host.output
    for port in (azurite_port, host.port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


class _SignalledHost(DevHost):
    """The demo dev host, plus a way to know that all its output has been read."""

    def __init__(self, outbox):
        self.drained = threading.Event()
        super().__init__(outbox)

    def _read(self) -> None:
        try:
            super()._read()
        finally:
            self.drained.set()


def _processes_serving(port: int) -> list[int]:
    """PIDs of Azurite processes started for this port (Linux /proc; empty elsewhere)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--tablePort" in args and str(port).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


# make forwards a SIGTERM (or the terminal's Ctrl-C reaches both make and the host), so the host may
# be told to stop twice, at once or while it cleans up: the second signal must change nothing.
@pytest.mark.parametrize(
    "first, second, gap",
    [
        (signal.SIGTERM, signal.SIGTERM, 0.0),
        (signal.SIGTERM, signal.SIGINT, 0.0),
        (signal.SIGINT, signal.SIGTERM, 0.2),
    ],
    ids=["TERM+TERM", "TERM+INT", "INT+TERM-during-cleanup"],
)
def test_a_second_stop_signal_is_ignored_quietly(tmp_path, first, second, gap):
    host = _SignalledHost(tmp_path)
    azurite_port = int(re.search(r"Azurite at http://127\.0\.0\.1:(\d+)", host.output).group(1))
    try:
        host.process.send_signal(first)
        if gap:
            host.wait_for_line("Stopping...", timeout=10)
            time.sleep(gap)
        host.process.send_signal(second)
        started = time.monotonic()
        assert host.stop() == 0, host.output
        assert time.monotonic() - started < 20
        assert host.drained.wait(10)
        assert "Stopping..." in host.output and "Traceback" not in host.output, host.output
        for port in (azurite_port, host.port):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
        assert _processes_serving(azurite_port) == []
    finally:
        host.stop()
        for pid in _processes_serving(azurite_port):  # a left-over Azurite of this test: don't leak it
            os.kill(pid, signal.SIGKILL)
