"""`make run` in a fresh process: the demo walkthrough from the README, over HTTP, as a person would do it."""

import re
import socket

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
