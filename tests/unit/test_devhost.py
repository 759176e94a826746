"""The dev host loads the real function folders the way the Python worker does."""

import json
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devhost import local_settings
from devhost.functions import Function, FunctionLoadError, discover

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
    assert timer.schedule({}) == "0 */5 * * * *"  # the heartbeat: the app keeps the calendar


def test_a_schedule_naming_an_app_setting_resolves_like_the_host_does():
    tick = Function("Tick", {"type": "timerTrigger", "name": "timer", "schedule": "%my_schedule%"}, print)
    assert tick.schedule({"my_schedule": "0 0 19 * * *"}) == "0 0 19 * * *"
    with pytest.raises(FunctionLoadError, match="my_schedule"):
        tick.schedule({})


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


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "x" * 300])
def test_a_bad_tz_is_a_one_line_cannot_start_naming_tz(zone, monkeypatch, capsys, tmp_path):
    from devhost.__main__ import main

    monkeypatch.setenv("TZ", zone)
    assert main(["--demo", "--port", str(_free_port()), "--outbox", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("Cannot start: TZ is not an IANA time zone name") and err.count("\n") == 1
    assert "Traceback" not in out + err


def test_a_bad_tz_stops_python_m_devhost_with_exit_1_and_no_traceback(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "TZ": "Europe"}
    run = subprocess.run(
        [sys.executable, "-m", "devhost", "--demo", "--port", str(_free_port()), "--outbox", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == "Cannot start: TZ is not an IANA time zone name (like Europe/Berlin): 'Europe'\n"
    assert "Traceback" not in run.stdout


@pytest.mark.parametrize("zone", ["", "Europe/Berlin", ":Europe/Berlin"])
def test_timers_read_schedules_in_tz_as_glibc_spells_it(zone, monkeypatch):
    from datetime import UTC

    from devhost.timers import schedule_zone

    monkeypatch.setenv("TZ", zone)
    assert schedule_zone() == (UTC if not zone else ZoneInfo("Europe/Berlin"))


def test_a_taken_port_names_both_ways_to_pick_another(capsys):
    import socket

    from devhost.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Cannot start: port {port}: ") and err.count("\n") == 1
    assert "make run PORT=7181" in err and "python -m devhost --port 7181" in err


def _make_n(*args: str) -> str:
    import shutil
    import subprocess

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PORT", "ARGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    # -n only prints the recipes (run has no $(MAKE) line, so nothing is installed or started)
    done = subprocess.run(
        ["make", "-n", "run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [line for line in done.stdout.splitlines() if " -m devhost" in line]
    return line


def test_make_run_passes_port_and_args_on_to_the_dev_host():
    assert _make_n().split(" -m devhost")[1].split() == ["--port", "7071"]
    assert _make_n("PORT=7181").split(" -m devhost")[1].split() == ["--port", "7181"]
    with_args = _make_n("PORT=7181", "ARGS=--demo --outbox /tmp/mails")
    assert with_args.split(" -m devhost")[1].split() == ["--port", "7181", "--demo", "--outbox", "/tmp/mails"]


def _local_settings(tmp_path, **values) -> Path:
    """A local.settings.json with the example file's valid values (the demo's own), changed by `values`."""
    from tests.fakes import VALID_ENVIRON

    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {**VALID_ENVIRON, **values}}))
    return path


VALID_ENVIRON_KEYS = {"AzureWebJobsStorage", "aml_workspaces", "TZ"}  # the test's environment: not ours


def _devhost(tmp_path, settings: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in VALID_ENVIRON_KEYS}
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--settings", str(settings), "--port", str(_free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_broken_settings_stop_make_run_at_once_in_one_line_naming_every_problem(tmp_path):
    run = _devhost(tmp_path, _local_settings(tmp_path, shutdown_days="Mon-Fir", warning_minutes="4"))
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
    assert run.stderr.startswith("Cannot start: App Settings: ") and run.stderr.count("\n") == 1
    assert "shutdown_days must be English" in run.stderr and "warning_minutes " in run.stderr
    assert "Host ready" not in run.stdout


def test_a_misspelt_setting_is_named_with_its_correction_and_ignored():
    from shared.settings import Settings
    from tests.fakes import environ

    settings = Settings.from_environ(environ(timezone="Europe/Berlin", shutdown_day="Mon-Fri", PATH="/x"))
    assert settings.warnings == (
        "shutdown_day is not a setting of this app, so it is ignored: did you mean shutdown_days?",
        "timezone is not a setting of this app, so it is ignored: did you mean time_zone?",
    )


def test_make_check_names_a_misspelt_setting_with_its_correction():
    from datetime import UTC, datetime

    from devhost.check import render
    from shared.preflight import Preflight

    warning = "timezone is not a setting of this app, so it is ignored: did you mean time_zone?"
    out = render(Preflight(datetime(2026, 11, 24, tzinfo=UTC), (), {}), False, (warning,))
    assert f"WARNING: {warning}" in out.splitlines()
