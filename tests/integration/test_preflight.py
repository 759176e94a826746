"""`make check` over the real SDKs and the stand-ins: it signs in, lists and reads, and prints what tonight
would do; it never mails, stops or writes."""

import json

from devhost import check
from tests.fakes import SINGLE_WORKSPACE_OFF

NOT_THERE = "/nonexistent/local.settings.json"


def writes(wire) -> list:
    return [r for r in wire.standins.traffic.records() if r.method in ("POST", "PUT", "PATCH", "DELETE")
            and r.service not in ("aad", "identity")]  # fmt: skip


def test_the_preflight_prints_tonights_plan_and_changes_nothing(wire, capsys):
    aml = wire.standins.azureml
    aml.seed("ci-alice")
    aml.seed("ci-bob", state="JobRunning", created_by="bob@contoso.com")
    aml.seed("ci-frank", tags={"auto-shutdown": "off"})
    aml.seed("ci-carol", state="Stopped")
    other = aml.add_workspace(aml.subscription_id, "rg-found", "ws-found")
    other.seed("ci-x")
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=f"{aml.subscription_id}/*")

    assert check.main(["--settings", NOT_THERE]) == 0
    out = capsys.readouterr().out
    assert f"Workspace {aml.subscription_id}/{aml.resource_group}/{aml.workspace}" in out
    assert "next shutdown: Tuesday 24 November 2026 at 20:00 CET (Europe/Berlin) (in 3 h 0 min)" in out
    assert "mail at 17:00; minimum_notice_minutes 30: an instance started after the mail" in out
    assert "calendar: Mon, Tue, Wed, Thu, Fri, Sat, Sun at 20:00 Europe/Berlin, mail 180 min before" in out
    assert "would stop 1: ci-alice" in out and "busy with a job 1: ci-bob" in out
    assert "opted out 1: ci-frank" in out and "not running 1" in out
    assert "mail to ml-team@contoso.com: ci-alice, ci-bob" in out
    assert f"Workspace {aml.subscription_id}/rg-found/ws-found" in out and "would stop 1: ci-x" in out
    assert out.rstrip().endswith("All checks passed. Nothing was sent, stopped or written.")
    assert aml.instance("ci-alice") == "Running" and wire.mails() == [] and wire.night_records() == {}
    assert writes(wire) == []


def test_a_workspace_that_cannot_be_reached_is_named_and_fails_the_check(wire, capsys):
    aml = wire.standins.azureml
    gone = aml.add_workspace(aml.subscription_id, "rg", "ws-gone")
    entries = [{"subscription_id": aml.subscription_id, "resource_group": aml.resource_group, "workspace": aml.workspace},
               {"subscription_id": aml.subscription_id, "resource_group": "rg", "workspace": "ws-gone"}]  # fmt: skip
    aml.remove_workspace(gone)
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=json.dumps(entries))
    assert check.main(["--settings", NOT_THERE]) == 1
    out = capsys.readouterr().out
    assert "ws-gone: not found" in out and "PROBLEM:" in out and "1 problem(s): see above." in out


def test_invalid_settings_are_all_named_and_nothing_is_called(wire, capsys):
    wire.configure(cancel_link_secret="short", time_zone="Mars/Olympus")
    assert check.main(["--settings", NOT_THERE]) == 2
    out = capsys.readouterr().out
    assert out.startswith("Cannot check: 2 App Setting problem(s)") and "cancel_link_secret" in out
    assert wire.standins.traffic.records() == []
