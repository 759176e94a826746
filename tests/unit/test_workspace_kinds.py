"""Azure AI Foundry hubs, projects and feature stores behind `*` entries, over fakes: hubs and workspaces
are managed, projects and feature stores passed over with one INFO line each, and an instance is mailed
and stopped once however ARM lists its workspace. A project's compute is its hub's: here the project's
fake workspace is the hub's very object, so anything done through the project shows on the hub."""

import json
import logging
from datetime import UTC, datetime

import pytest

from shared import app
from shared.domain import Instance
from shared.errors import ConfigurationError, ProjectWorkspaceError, RunFailedError
from shared.settings import Settings
from shared.workspace_kinds import ListedWorkspace
from tests.fakes import SINGLE_WORKSPACE_OFF, FakeDirectory, FakeLedger, FakeMailer, FakeWorkspace, environ
from tests.fakes import workspace_id as arm_id

SUB = "3b1c0d7e-0000-4000-8000-00000000000a"
MAIL = datetime(2026, 11, 24, 18, 0, 30, tzinfo=UTC)  # 19:00 Berlin, the shutdown is at 20:00
SWEEP = datetime(2026, 11, 24, 19, 0, 30, tzinfo=UTC)
HUB, PROJECT, STORE = (
    arm_id(SUB, "rg-ai", "hub-ai"),
    arm_id(SUB, "rg-ai", "proj-ai"),
    arm_id(SUB, "rg-fs", "fs-1"),
)


class Foundry:
    """bootstrap() over a fake directory listing `listed`, one fake workspace per (sub, group, name)."""

    def __init__(self, value, *listed: str | ListedWorkspace):
        text = value if isinstance(value, str) else json.dumps(value)
        env = environ(
            **SINGLE_WORKSPACE_OFF, aml_workspaces=text, time_zone="Europe/Berlin", warning_minutes="60"
        )
        self.settings = Settings.from_environ(env)
        told = lambda night: list(self.spaces[night.target.name.lower()].instances)  # noqa: E731 - the mail
        self.directory, self.ledger, self.mailer = FakeDirectory(*listed), FakeLedger(told=told), FakeMailer()
        self.hub = FakeWorkspace(Instance("ci-hub", "Running", "alice@contoso.com"))
        self.spaces = {"ws-plain": FakeWorkspace(Instance("ci-plain", "Running", "bob@contoso.com")),
                       "hub-ai": self.hub, "proj-ai": self.hub,  # the project shows the hub's instances
                       "fs-1": FakeWorkspace(Instance("ci-fs", "Running", "carol@contoso.com"))}  # fmt: skip

    def app(self, now):
        return app.bootstrap(self.settings, workspaces=lambda sub, rg, name: self.spaces[name.lower()],
                             directory=self.directory, ledger=self.ledger, mailer=self.mailer,
                             clock=lambda: now, sleep=lambda s: None)  # fmt: skip


def listing() -> list[ListedWorkspace]:
    return [
        ListedWorkspace(arm_id(SUB, "rg-ml", "ws-plain")),  # no kind at all: an Azure ML workspace
        ListedWorkspace(HUB, "Hub"),
        ListedWorkspace(PROJECT, "Project", HUB),
        ListedWorkspace(STORE, "FeatureStore"),
    ]


def passed_over(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Not managing workspace")]


def test_a_star_entry_manages_workspaces_and_hubs_and_passes_over_projects_and_feature_stores(caplog):
    caplog.set_level(logging.INFO)
    foundry = Foundry(f"{SUB}/*", *listing())

    foundry.app(MAIL).mail_sender()
    (mail,) = foundry.mailer.sent
    assert sorted(mail.instances) == ["ci-hub", "ci-plain"]  # the hub's instance once, not via its project
    assert passed_over(caplog) == [
        f"Not managing workspace {SUB}/rg-ai/proj-ai (found by {SUB}/*): an Azure AI Foundry project of hub "
        f"{SUB}/rg-ai/hub-ai: its compute instances are the hub's",
        f"Not managing workspace {SUB}/rg-fs/fs-1 (found by {SUB}/*): of kind FeatureStore: only workspaces "
        "of kind Default and Hub are managed",
    ]

    caplog.clear()
    foundry.app(SWEEP).compute_shutdown()
    assert foundry.hub.stop_calls == ["ci-hub"] and foundry.spaces["ws-plain"].stopped == ["ci-plain"]
    assert foundry.spaces["fs-1"].calls == 0
    assert len(passed_over(caplog)) == 2  # one line each per run

    check = foundry.app(MAIL).preflight()
    assert check.ok and sorted(c.target.name for c in check.workspaces) == ["hub-ai", "ws-plain"]
    assert check.not_managed == {
        f"{SUB}/rg-ai/proj-ai": f"an Azure AI Foundry project of hub {SUB}/rg-ai/hub-ai: its compute "
        "instances are the hub's",
        f"{SUB}/rg-fs/fs-1": "of kind FeatureStore: only workspaces of kind Default and Hub are managed",
    }


@pytest.mark.parametrize(
    "entries",
    [f"{SUB}/rg-ai/*", f"{SUB}/*; {SUB}/RG-AI/HUB-AI"],
    ids=["one star entry", "a star entry and one naming the hub in capitals"],
)
def test_a_hub_listed_twice_in_another_case_and_with_its_project_is_mailed_about_and_stopped_once(
    caplog, entries
):
    caplog.set_level(logging.INFO)
    shouting = HUB.replace("rg-ai", "RG-AI").replace("hub-ai", "HUB-AI")
    foundry = Foundry(entries, ListedWorkspace(HUB, "Hub"), ListedWorkspace(shouting, "hub"),
                      ListedWorkspace(PROJECT, "Project", HUB), ListedWorkspace(PROJECT, "Project", HUB))  # fmt: skip

    foundry.app(MAIL).mail_sender()
    foundry.app(SWEEP).compute_shutdown()

    (mail,) = foundry.mailer.sent
    assert mail.instances == ("ci-hub",) and mail.text.count("* ci-hub ") == 1
    assert foundry.hub.stop_calls == ["ci-hub"]
    assert [key for key in foundry.ledger.nights if key[1] == "sweep"] == [
        (f"{SUB}|rg-ai|hub-ai|2026-11-24".lower(), "sweep")
    ]  # one night swept, the hub's
    assert len(passed_over(caplog)) == 2  # the project listed twice: one line per run (mail, sweep)


def test_an_entry_naming_a_project_fails_that_workspace_alone_in_one_line_naming_its_hub():
    foundry = Foundry(f"{SUB}/rg-ml/ws-plain; {SUB}/rg-ai/proj-ai")
    refusal = ProjectWorkspaceError(
        f"aml_workspaces names {SUB}/rg-ai/proj-ai, an Azure AI Foundry project of hub {SUB}/rg-ai/hub-ai: "
        "its compute instances are the hub's; name the hub instead"
    )
    foundry.hub.list_errors.append(refusal)  # what both compute adapters raise on the first read

    with pytest.raises(RunFailedError) as failed:
        foundry.app(SWEEP).compute_shutdown()

    assert foundry.spaces["ws-plain"].stopped == ["ci-plain"] and foundry.hub.stopped == []
    assert failed.value.failures == {f"{SUB}/rg-ai/proj-ai": str(refusal)}
    assert isinstance(refusal, ConfigurationError) and refusal.problems == [str(refusal)]
    assert "\n" not in str(refusal)
