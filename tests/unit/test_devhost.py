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
