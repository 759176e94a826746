"""Many workspaces from one deployment, over fakes: discovery only when due, the most specific entry
wins, one mail per recipient grouped by workspace, failures isolated, per-workspace calendars."""

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared import app
from shared.cancellation import CancelRequest, Outcome
from shared.domain import ClientInfo, Instance
from shared.errors import CredentialsError, InvalidLinkError, NotFoundError, RunFailedError
from shared.settings import Settings
from tests.fakes import (
    SINGLE_WORKSPACE_OFF,
    FakeDirectory,
    FakeLedger,
    FakeMailer,
    FakeWorkspace,
    environ,
    workspace_id,
)  # fmt: skip

SUB_A = "3b1c0d7e-0000-4000-8000-00000000000a"
SUB_B = "3b1c0d7e-0000-4000-8000-00000000000b"
BERLIN_MAIL = datetime(2026, 11, 24, 18, 0, 30, tzinfo=UTC)  # 19:00 Berlin, the shutdown is at 20:00
BERLIN_SWEEP = datetime(2026, 11, 24, 19, 0, 30, tzinfo=UTC)  # 20:00 Berlin
NEW_YORK_SWEEP = datetime(2026, 11, 25, 1, 0, 30, tzinfo=UTC)  # 20:00 New York
QUIET = datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC)


class Estate:
    """bootstrap() over a fake workspace per (subscription, group, name), a fake ARM directory, a clock."""

    def __init__(self, value, **overrides):
        text = value if isinstance(value, str) else json.dumps(value)
        env = environ(**SINGLE_WORKSPACE_OFF, aml_workspaces=text, time_zone="Europe/Berlin",
                      warning_minutes="60", **overrides)  # fmt: skip
        self.settings = Settings.from_environ(env)
        self.workspaces: dict[tuple[str, str, str], FakeWorkspace] = {}
        self.directory, self.ledger, self.mailer = (
            FakeDirectory(),
            FakeLedger(told=self._instances),
            FakeMailer(),
        )
        self.now = QUIET

    def add(self, sub: str, rg: str, name: str, *instances: Instance, listed: bool = True) -> FakeWorkspace:
        self.workspaces[(sub.lower(), rg.lower(), name.lower())] = FakeWorkspace(*instances)
        if listed:
            self.directory.ids.append(workspace_id(sub, rg, name))
        return self.workspaces[(sub.lower(), rg.lower(), name.lower())]

    def _instances(self, night) -> list[str]:
        """Every instance of the night's workspace: told about by the evening's mail, unless a test mails."""
        t = night.target
        return list(
            self.workspaces[(t.subscription_id.lower(), t.resource_group.lower(), t.name.lower())].instances
        )

    def app(self):
        def workspace(sub, rg, name):
            return self.workspaces[(sub.lower(), rg.lower(), name.lower())]

        return app.bootstrap(self.settings, workspaces=workspace, directory=self.directory, ledger=self.ledger,
                             mailer=self.mailer, clock=lambda: self.now, sleep=lambda s: None)  # fmt: skip

    def sweep(self, at):
        self.now = at
        return self.app().compute_shutdown()

    def mail(self, at):
        self.now = at
        return self.app().mail_sender()


def running(name: str, owner: str = "alice@contoso.com") -> Instance:
    return Instance(name, "Running", owner)


def test_a_star_entry_is_listed_through_arm_only_on_a_tick_that_has_something_due():
    estate = Estate(f"{SUB_A}/*")
    one = estate.add(SUB_A, "rg-1", "ws-one", running("ci-a"))
    two = estate.add(SUB_A, "rg-2", "ws-two", running("ci-b"))
    assert estate.sweep(QUIET) is None and estate.mail(QUIET) is None
    assert estate.directory.calls == [] and estate.ledger.calls == 0
    reports = estate.sweep(BERLIN_SWEEP)
    assert estate.directory.calls == [(SUB_A, None)]
    assert one.stopped == ["ci-a"] and two.stopped == ["ci-b"]
    assert sorted(r.night.target.name for r in reports) == ["ws-one", "ws-two"]


def test_the_most_specific_entry_owns_a_workspace_with_its_own_calendar():
    estate = Estate([
        {"subscription_id": SUB_A, "workspace": "*"},  # app-wide: Berlin 20:00
        {"subscription_id": SUB_A, "resource_group": "rg-us", "workspace": "ws-us", "time_zone": "America/New_York"},
    ])  # fmt: skip
    eu = estate.add(SUB_A, "rg-eu", "ws-eu", running("ci-eu"))
    us = estate.add(SUB_A, "rg-us", "ws-us", running("ci-us"))
    estate.sweep(BERLIN_SWEEP)
    assert eu.stopped == ["ci-eu"] and us.stopped == []  # 14:00 in New York
    estate.sweep(NEW_YORK_SWEEP)
    assert us.stopped == ["ci-us"]


def test_one_mail_per_recipient_covers_every_due_workspace_grouped_by_workspace():
    estate = Estate(f"{SUB_A}/rg-1/ws-one; {SUB_A}/rg-2/ws-one; {SUB_B}/rg-3/ws-three")
    estate.add(SUB_A, "rg-1", "ws-one", running("ci-a"), running("ci-shared"))
    estate.add(SUB_A, "rg-2", "ws-one", running("ci-shared"))  # the same names in another group
    estate.add(SUB_B, "rg-3", "ws-three", running("ci-c"))
    report = estate.mail(BERLIN_MAIL)
    (mail,) = estate.mailer.sent
    assert mail.to == "ml-team@contoso.com" and report.mailed == ("ml-team@contoso.com",)
    assert mail.instances == ("ci-a", "ci-shared", "ci-shared", "ci-c")
    assert "3 workspaces stop their running compute instances" in mail.html
    assert mail.text.count("== ws-one (resource group rg-1)") == 1
    assert mail.text.count("== ws-one (resource group rg-2)") == 1
    links = re.findall(r"Keep it running tonight: (\S+)", mail.text)
    grants = [estate.app().signer.verify(parse_qs(urlsplit(link).query)["token"][0]) for link in links]
    assert [g.workspace.split("/")[4] for g in grants] == ["rg-1", "rg-1", "rg-2", "rg-3"]
    buttons = re.findall(r">(Keep [^<]+ running tonight)</a>", mail.html)
    assert buttons == [
        "Keep ci-a running tonight", "Keep ci-shared in ws-one (rg-1) running tonight",
        "Keep ci-shared in ws-one (rg-2) running tonight", "Keep ci-c running tonight",
    ]  # fmt: skip
    assert estate.mail(BERLIN_MAIL + timedelta(minutes=5)) is None and len(estate.mailer.sent) == 1


def test_two_workspaces_of_one_name_in_different_groups_never_share_a_keep():
    estate = Estate(f"{SUB_A}/rg-1/ws-one; {SUB_A}/rg-2/ws-one")
    first = estate.add(SUB_A, "rg-1", "ws-one", running("ci-shared"))
    second = estate.add(SUB_A, "rg-2", "ws-one", running("ci-shared"))
    estate.mail(BERLIN_MAIL)
    link = re.findall(r"Keep it running tonight: (\S+)", estate.mailer.sent[0].text)[0]  # rg-1's
    token = parse_qs(urlsplit(link).query)["token"][0]
    kept = estate.app().cancel_shutdown(CancelRequest("POST", token, ClientInfo()))
    assert kept.outcome is Outcome.KEPT and kept.night.target.resource_group == "rg-1"
    estate.sweep(BERLIN_SWEEP)
    assert first.stopped == [] and second.stopped == ["ci-shared"]


def test_a_forbidden_and_a_missing_workspace_never_keep_the_others_from_being_stopped(caplog):
    caplog.set_level(logging.INFO)
    estate = Estate(f"{SUB_A}/rg/ws-ok; {SUB_A}/rg/ws-denied; {SUB_B}/rg/ws-gone; {SUB_B}/rg/ws-fine")
    ok = estate.add(SUB_A, "rg", "ws-ok", running("ci-a"))
    estate.add(SUB_A, "rg", "ws-denied").list_errors.append(
        CredentialsError("AzureML", "listing compute instances: access denied (HTTP 403)", ("identity",))
    )
    estate.add(SUB_B, "rg", "ws-gone").list_errors.append(NotFoundError("AzureML", "workspace not found"))
    fine = estate.add(SUB_B, "rg", "ws-fine", running("ci-b"))
    with pytest.raises(RunFailedError) as failed:
        estate.sweep(BERLIN_SWEEP)
    assert ok.stopped == ["ci-a"] and fine.stopped == ["ci-b"]
    assert set(failed.value.failures) == {f"{SUB_A}/rg/ws-denied", f"{SUB_B}/rg/ws-gone"}
    assert "access denied (HTTP 403)" in failed.value.failures[f"{SUB_A}/rg/ws-denied"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ComputeShutdown")]
    assert sum(f"in workspace {SUB_A}/rg/ws-ok: stopped 1," in line for line in lines) == 1
    (total,) = [line for line in lines if line.startswith("ComputeShutdown total")]
    assert total.startswith("ComputeShutdown total over 4 workspace(s): stopped 2, kept by request 0,")
    assert "failed 2 [" in total


def test_a_subscription_that_cannot_be_listed_fails_the_run_after_the_rest_is_stopped():
    estate = Estate(f"{SUB_A}/*; {SUB_B}/rg/ws-named")
    estate.directory.errors[(SUB_A, None)] = CredentialsError("AzureML", "listing workspaces: denied", ("x",))
    named = estate.add(SUB_B, "rg", "ws-named", running("ci-b"))
    with pytest.raises(RunFailedError) as failed:
        estate.sweep(BERLIN_SWEEP)
    assert named.stopped == ["ci-b"]
    assert list(failed.value.failures) == [f"workspaces of {SUB_A}/*"]


def test_mails_go_out_for_the_other_workspaces_when_one_cannot_be_listed():
    estate = Estate(f"{SUB_A}/rg/ws-ok; {SUB_A}/rg/ws-gone")
    estate.add(SUB_A, "rg", "ws-ok", running("ci-a"))
    estate.add(SUB_A, "rg", "ws-gone").list_errors.append(NotFoundError("AzureML", "workspace not found"))
    with pytest.raises(RunFailedError) as failed:
        estate.mail(BERLIN_MAIL)
    assert [m.instances for m in estate.mailer.sent] == [("ci-a",)]
    assert list(failed.value.failures) == [f"{SUB_A}/rg/ws-gone"]


def test_a_link_of_a_workspace_found_behind_a_star_is_honoured_without_any_remote_listing():
    estate = Estate(f"{SUB_A}/rg-found/*")
    estate.add(SUB_A, "rg-found", "ws-found", running("ci-a"))
    estate.mail(BERLIN_MAIL)
    listed = len(estate.directory.calls)
    token = parse_qs(urlsplit(re.findall(r"tonight: (\S+)", estate.mailer.sent[0].text)[0]).query)["token"][0]
    page = estate.app().cancel_shutdown(CancelRequest("GET", token, ClientInfo()))
    assert page.outcome is Outcome.CONFIRM and page.night.target.name == "ws-found"
    assert len(estate.directory.calls) == listed


def test_a_link_for_a_workspace_no_entry_covers_any_more_is_refused():
    old = Estate(f"{SUB_A}/rg/ws-old; {SUB_A}/rg/ws-new")
    old.add(SUB_A, "rg", "ws-old", running("ci-a"))
    old.add(SUB_A, "rg", "ws-new")
    old.mail(BERLIN_MAIL)
    token = parse_qs(urlsplit(re.findall(r"tonight: (\S+)", old.mailer.sent[0].text)[0]).query)["token"][0]
    new = Estate(f"{SUB_A}/rg/ws-new")
    new.now = BERLIN_MAIL
    with pytest.raises(InvalidLinkError, match="does not manage"):
        new.app().cancel_shutdown(CancelRequest("POST", token, ClientInfo()))
    assert new.ledger.calls == 0


def test_per_workspace_recipients_and_instances():
    estate = Estate([
        {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws-eu", "to_emails": "eu@contoso.com",
         "instances": "ci-a"},
        {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws-all"},
    ])  # fmt: skip
    eu = estate.add(SUB_A, "rg", "ws-eu", running("ci-a"), running("ci-not-managed"))
    estate.add(SUB_A, "rg", "ws-all", running("ci-b"))
    estate.mail(BERLIN_MAIL)
    assert {m.to: m.instances for m in estate.mailer.sent} == {
        "eu@contoso.com": ("ci-a",),
        "ml-team@contoso.com": ("ci-b",),
    }
    estate.sweep(BERLIN_SWEEP)
    assert eu.stopped == ["ci-a"]


def test_workspaces_of_one_subscription_share_one_throttle_after_a_429(monkeypatch):
    """ARM throttles per subscription: a Retry-After seen in one workspace holds back its neighbours."""
    from shared import estate_sweep

    seen = {}

    def record(now, calendar, workspace, *args):
        seen[calendar.target.name] = args[-1]  # the throttle

    monkeypatch.setattr(estate_sweep, "sweep_workspace", record)
    estate = Estate(f"{SUB_A}/rg/ws-one; {SUB_A}/rg/ws-two; {SUB_B}/rg/ws-three")
    for sub, name in ((SUB_A, "ws-one"), (SUB_A, "ws-two"), (SUB_B, "ws-three")):
        estate.add(sub, "rg", name, running("ci-a"))
    estate.sweep(BERLIN_SWEEP)
    assert seen["ws-one"] is seen["ws-two"] and seen["ws-three"] is not seen["ws-one"]


def test_an_instance_started_after_the_mail_behind_a_star_entry_gets_its_own_notice_before_its_stop():
    estate = Estate(f"{SUB_A}/*")
    one = estate.add(SUB_A, "rg-1", "ws-one", running("ci-a"))
    estate.mail(BERLIN_MAIL)
    one.instances["ci-late"] = running("ci-late", "bob@contoso.com")  # started at 19:50
    estate.mail(BERLIN_SWEEP - timedelta(minutes=5))
    late = [m for m in estate.mailer.sent if "ci-late" in m.instances]
    assert [m.instances for m in late] == [("ci-late",)] and "at 20:25" in late[0].text
    estate.sweep(BERLIN_SWEEP)
    assert one.stopped == ["ci-a"]  # ci-late keeps its 30 minutes
    for minutes in range(5, 30, 5):
        estate.sweep(BERLIN_SWEEP + timedelta(minutes=minutes))
    assert one.stopped == ["ci-a", "ci-late"]
