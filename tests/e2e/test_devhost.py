"""`make run` in a fresh process: the demo walkthrough from the README, over HTTP, as a person would do it."""

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import DevHost


def test_the_demo_walkthrough(devhost):
    assert devhost.run_timer("MailSender") == 202
    link = devhost.link("ml-team@contoso.com", "ci-alice")
    assert link.startswith(f"http://localhost:{devhost.port}/api/CancelShutDown?token=")

    status, headers, page = devhost.request("GET", link)
    assert status == 200 and '<form method="post">' in page and headers["Cache-Control"] == "no-store"
    status, _, page = devhost.request(
        "POST", link, b"", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200 and "ci-alice keeps running tonight" in page

    mark = len(devhost.lines)
    assert devhost.run_timer("ComputeShutdown") == 202
    summary = devhost.wait_for_line("ComputeShutdown for the night of", after=mark)
    assert "stopped 2, kept by request 1, busy with a job 1, not running 1, failed 0" in summary


def test_timer_functions_have_their_schedules_and_the_http_function_its_url(devhost):
    out = devhost.output
    assert re.search(r"MailSender: timerTrigger, next run \d{4}-", out)
    assert (
        f"CancelShutDown: [DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT] http://localhost:{devhost.port}/api/CancelShutDown"
        in out
    )
    for step in ("Send tonight's mails now", "Open a mail in a browser", "Run tonight's shutdown now"):
        assert step in out


def test_unknown_functions_and_routes_are_404(devhost):
    assert devhost.run_timer("NoSuchFunction") == 404
    assert devhost.request("GET", f"{devhost.base}/api/NoSuchRoute")[0] == 404
    assert devhost.request("POST", f"{devhost.base}/admin/functions/CancelShutDown", b"{}")[0] == 400


def test_the_dev_host_never_logs_a_link_token(devhost):
    devhost.run_timer("MailSender")
    link = devhost.link("ml-team@contoso.com", "ci-alice")  # still running: kept in the walkthrough
    devhost.request("GET", link)
    token = link.split("token=")[1]
    assert "GET /api/CancelShutDown -> 200" in devhost.output and token not in devhost.output


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
