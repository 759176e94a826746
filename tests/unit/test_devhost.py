"""The dev host loads the real function folders the way the Python worker does."""

import json
import os
from pathlib import Path

import pytest

from devhost import local_settings
from devhost.functions import FunctionLoadError, discover

ROOT = Path(__file__).resolve().parents[2]


def test_discovers_the_three_functions_with_their_bindings():
    functions = {f.name: f for f in discover(ROOT)}
    assert set(functions) == {"MailSender", "CancelShutDown", "ComputeShutdown"}
    http = functions["CancelShutDown"]
    assert (http.kind, http.binding_name, http.route, http.returns_http) == (
        "httpTrigger",
        "req",
        "CancelShutDown",
        True,
    )
    assert {"GET", "HEAD", "POST"} <= http.methods
    timer = functions["ComputeShutdown"]
    assert (timer.kind, timer.binding_name) == ("timerTrigger", "timer")
    assert timer.schedule({"shutdown_schedule": "0 0 19 * * *"}) == "0 0 19 * * *"
    with pytest.raises(FunctionLoadError, match="shutdown_schedule"):
        timer.schedule({})


def test_local_settings_are_applied_but_the_environment_wins(tmp_path, monkeypatch, caplog):
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"devhost_a": "from-file", "devhost_b": "from-file"}})
    )
    monkeypatch.setenv("devhost_b", "from-env")
    monkeypatch.delenv("devhost_a", raising=False)
    local_settings.apply(local_settings.load(path))
    assert os.environ["devhost_a"] == "from-file" and os.environ["devhost_b"] == "from-env"
    assert "Skipping 'devhost_b'" in caplog.text
    monkeypatch.delenv("devhost_a")


@pytest.mark.parametrize("content", ["{not json", '{"IsEncrypted": true, "Values": {}}', '{"Values": []}'])
def test_unusable_local_settings_are_a_clear_error(tmp_path, content):
    path = tmp_path / "local.settings.json"
    path.write_text(content)
    with pytest.raises(local_settings.LocalSettingsError, match=r"local\.settings\.json"):
        local_settings.load(path)


def test_timers_fire_on_their_six_field_schedule():
    import threading

    from devhost.functions import Function
    from devhost.timers import TimerScheduler

    fired = threading.Event()
    received = []

    def main(timer):
        received.append(timer)
        fired.set()

    every_second = Function(
        "Tick", {"type": "timerTrigger", "name": "timer", "schedule": "* * * * * *"}, main
    )
    scheduler = TimerScheduler([every_second])
    scheduler.start()
    try:
        assert fired.wait(3), "the timer never fired"
    finally:
        scheduler.stop()
    assert type(received[0]).__name__ == "TimerRequest" and received[0].past_due is False


def test_http_functions_answer_only_their_methods_and_route():
    import urllib.error
    import urllib.request

    import azure.functions as func

    from devhost.functions import Function
    from devhost.http_host import FunctionsHost

    def main(req):
        return func.HttpResponse(f"{req.method} {req.params.get('x')}", status_code=200)

    trigger = {"type": "httpTrigger", "name": "req", "methods": ["get"], "route": "things/list"}
    host = FunctionsHost(0, [Function("Things", trigger, main, returns_http=True)])
    host.serve_in_background()
    base = f"http://127.0.0.1:{host.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/api/Things/List?x=1") as response:  # routes ignore case
            assert response.read() == b"GET 1"
        for method, path in (("POST", "/api/things/list"), ("GET", "/api/Things")):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(
                    urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
                )
            assert caught.value.code == 404
    finally:
        host.shutdown()
        host.server_close()


def test_a_malformed_request_line_is_refused_without_logging_it(caplog):
    import socket

    from devhost.http_host import FunctionsHost

    host = FunctionsHost(0, [])
    host.serve_in_background()
    try:
        with socket.create_connection(host.server_address) as raw:
            raw.sendall(b"GET /api/CancelShutDown?token=secret-token-123 HTTP/1.1 extra\r\n\r\n")
            assert b"400" in raw.recv(2000)  # a broken request line gets an HTTP/0.9-style error page
    finally:
        host.shutdown()
        host.server_close()
    assert "-> 400" in caplog.text and "secret-token-123" not in caplog.text
