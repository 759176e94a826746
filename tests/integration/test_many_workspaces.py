"""aml_workspaces over the real SDKs and the stand-ins (both compute clients): `*` discovery through ARM,
two workspaces of one name never sharing a keep, a 403 and a 404 while the rest are stopped, and
per-workspace calendars stopping each at its own local time."""

import json
import logging
import re
from datetime import UTC, datetime

import pytest

from shared.errors import RunFailedError
from tests.fakes import SINGLE_WORKSPACE_OFF

OTHER_SUBSCRIPTION = "7d2e4f10-0000-4000-8000-0000000000b2"
NEW_YORK_MAIL = datetime(2026, 11, 24, 22, tzinfo=UTC)  # 17:00 New York: three hours before 20:00
NEW_YORK_SWEEP = datetime(2026, 11, 25, 1, 0, 1, tzinfo=UTC)  # 20:00 New York


def use_workspaces(wire, value) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=text)


def groups_in(wire, to: str = "ml-team@contoso.com") -> dict[str, dict[str, str]]:
    """The one mail to `to`, as {"<workspace> (resource group <rg>)": {instance: link}}."""
    (mail,) = wire.standins.sendgrid.mails_to(to)
    text = wire.standins.sendgrid.content_of(mail, "text/plain")
    sections = re.split(r"^== ", text, flags=re.MULTILINE)[1:]
    groups = {}
    for section in sections:
        heading = section.split(":", 1)[0]
        groups[heading] = dict(re.findall(r"\* (\S+) .*\n  Keep it running tonight: (\S+)", section))
    return groups


def test_a_star_entry_finds_every_workspace_through_arm_and_one_sign_in_serves_them_all(wire, caplog):
    caplog.set_level(logging.INFO)
    aml = wire.standins.azureml
    sub = aml.subscription_id
    aml.seed("ci-default")
    first = aml.add_workspace(sub, "rg-team-a", "ws-team-a")
    second = aml.add_workspace(sub, "rg-team-b", "ws-team-b", region="eastus")
    first.seed("ci-a1")
    first.seed("ci-a2", state="Stopped")
    second.seed("ci-b1")
    elsewhere = aml.add_workspace(OTHER_SUBSCRIPTION, "rg-other", "ws-other")
    elsewhere.seed("ci-not-mine")
    use_workspaces(wire, f"{sub}/*")

    wire.mail()
    groups = groups_in(wire)
    assert {heading: sorted(links) for heading, links in groups.items()} == {
        f"{aml.workspace} (resource group {aml.resource_group})": ["ci-default"],
        "ws-team-a (resource group rg-team-a)": ["ci-a1"],
        "ws-team-b (resource group rg-team-b)": ["ci-b1"],
    }
    listings = wire.standins.traffic.records(service="arm", method="GET", path_regex=r"/workspaces$")
    assert [r.path for r in listings] == [
        f"/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/workspaces"
    ]

    wire.standins.traffic.clear_log()
    wire.sweep()
    assert aml.instance("ci-default") != "Running" and first.instance("ci-a1") != "Running"
    assert second.instance("ci-b1") != "Running" and elsewhere.instance("ci-not-mine") == "Running"
    assert len(wire.standins.traffic.records(service="aad", method="POST")) == 1  # one sign-in per run
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ComputeShutdown")]
    assert sum(" in workspace " in line and ": stopped 1," in line for line in lines) == 3
    assert any(line.startswith("ComputeShutdown total over 3 workspace(s): stopped 3,") for line in lines)


def test_two_workspaces_of_one_name_in_different_resource_groups_never_share_a_keep(wire):
    aml = wire.standins.azureml
    sub = aml.subscription_id
    twins = [aml.add_workspace(sub, f"rg-{team}", "ws-twin") for team in ("red", "blue")]
    for twin in twins:
        twin.seed("ci-alice")
    use_workspaces(wire, f"{sub}/rg-red/ws-twin; {sub}/rg-blue/ws-twin")

    wire.mail()
    red = groups_in(wire)["ws-twin (resource group rg-red)"]["ci-alice"]
    assert wire.click("POST", red).status_code == 200
    (keep,) = wire.ledger()
    assert "|rg-red|ws-twin|" in keep["PartitionKey"]
    wire.sweep()
    assert twins[0].instance("ci-alice") == "Running"  # kept by its owner
    assert twins[1].instance("ci-alice") != "Running"  # the other one, of the same name, stopped


def test_a_forbidden_and_a_deleted_workspace_fail_the_run_after_the_others_are_stopped(wire, caplog):
    aml = wire.standins.azureml
    sub = aml.subscription_id
    names = ("ws-ok", "ws-denied", "ws-gone", "ws-fine")
    spaces = {
        name: aml.add_workspace(sub if name != "ws-fine" else OTHER_SUBSCRIPTION, "rg", name)
        for name in names
    }
    for name, space in spaces.items():
        space.seed(f"ci-{name[3:]}")
    use_workspaces(wire, "; ".join(space.arm_id for space in spaces.values()))
    aml.deny(spaces["ws-denied"], scope="computes")
    aml.remove_workspace(spaces["ws-gone"])

    with pytest.raises(RunFailedError) as failed:
        wire.sweep()
    assert (
        spaces["ws-ok"].instance("ci-ok") != "Running" and spaces["ws-fine"].instance("ci-fine") != "Running"
    )
    assert spaces["ws-denied"].instance("ci-denied") == "Running"
    denied, gone = f"{sub}/rg/ws-denied", f"{sub}/rg/ws-gone"
    assert set(failed.value.failures) == {denied, gone}
    assert "access denied (HTTP 403" in failed.value.failures[denied]
    assert "ws-gone: not found" in failed.value.failures[gone]
    (total,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ComputeShutdown total")]
    assert total.startswith("ComputeShutdown total over 4 workspace(s): stopped 2,") and "failed 2 [" in total


def test_each_workspace_is_mailed_and_stopped_at_its_own_local_time(wire):
    aml = wire.standins.azureml
    sub = aml.subscription_id
    berlin = aml.add_workspace(sub, "rg-eu", "ws-berlin")
    new_york = aml.add_workspace(sub, "rg-us", "ws-new-york", region="eastus")
    berlin.seed("ci-alice")
    new_york.seed("ci-alice")
    use_workspaces(wire, [
        {"subscription_id": sub, "resource_group": "rg-eu", "workspace": "ws-berlin", "time_zone": "Europe/Berlin"},
        {"subscription_id": sub, "resource_group": "rg-us", "workspace": "ws-new-york",
         "time_zone": "America/New_York", "to_emails": "us-team@contoso.com"},
    ])  # fmt: skip

    wire.mail()  # 17:00 in Berlin, 11:00 in New York
    assert recipients(wire) == ["ml-team@contoso.com"]
    wire.sweep()  # 20:00 in Berlin, 14:00 in New York
    assert berlin.instance("ci-alice") != "Running" and new_york.instance("ci-alice") == "Running"
    wire.mail(NEW_YORK_MAIL)
    assert recipients(wire) == ["ml-team@contoso.com", "us-team@contoso.com"]
    wire.sweep(NEW_YORK_SWEEP)
    assert new_york.instance("ci-alice") != "Running"
    sweeps = {key.split("|")[2]: record for key, record in _sweep_records(wire).items()}
    assert sweeps == {"ws-berlin": "done", "ws-new-york": "done"}


def recipients(wire) -> list[str]:
    return [to["email"] for mail in wire.mails() for p in mail["personalizations"] for to in p["to"]]


def _sweep_records(wire) -> dict[str, str]:
    return {
        entity["PartitionKey"]: entity["State"] for entity in wire._table() if entity["RowKey"] == "~sweep"
    }
