"""Stop it later: the three choices, a delayed stop and its reminder, over the real SDKs and Azurite."""

import logging
from datetime import UTC, date, datetime, timedelta

from shared.domain import Cancellation, Night, WorkspaceTarget
from shared.table_ledger import TableCancelLedger

STOP = r"/computes/{}/stop$"


def seed(wire, *names):
    for name in names:
        wire.standins.azureml.seed(name, "Running", created_by=f"{name}@contoso.com")


def test_the_page_offers_the_three_choices_and_writes_nothing(wire):
    seed(wire, "ci-a")
    wire.mail()
    page = wire.click("GET", wire.link("ci-a"))
    body = page.get_body().decode()
    assert page.status_code == 200 and wire.ledger() == []
    for value, label in (("60", "Stop it at 21:00 instead"), ("120", "Stop it at 22:00 instead"),
                         ("night", "Keep ci-a running tonight")):  # fmt: skip
        assert f'name="delay" value="{value}"' in body and label in body


def test_one_hour_later_means_running_at_the_shutdown_and_stopped_an_hour_later(wire, caplog):
    caplog.set_level(logging.INFO)
    seed(wire, "ci-a", "ci-b")
    wire.mail()
    page = wire.click("POST", wire.link("ci-a"), delay="60")
    assert page.status_code == 200 and "will be stopped at <strong>21:00</strong>" in page.get_body().decode()
    (entity,) = wire.ledger()
    assert entity["AllNight"] is False and entity["Recipient"] == "ml-team@contoso.com"
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-b"]
    assert "delayed 1 (until 21:00)" in caplog.text
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=30))
    assert wire.standins.stopped_names() == ["ci-b"]  # not before its time
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=60))
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-b"]
    assert wire.night_records()["sweep"]["State"] == "done"


def test_the_reminder_goes_to_whose_link_it_was_with_the_same_link(wire):
    seed(wire, "ci-a")
    wire.configure(notify_instance_owner="true")
    wire.mail()
    link = wire.link("ci-a", to="ci-a@contoso.com")
    wire.click("POST", link, delay="60")
    wire.sweep()
    wire.standins.sendgrid.reset()
    wire.mail(at=wire.SWEEP_AT + timedelta(minutes=45))  # 20:45: the 21:00 stop is 15 minutes away
    (mail,) = wire.mails()
    assert mail["personalizations"][0]["to"] == [{"email": "ci-a@contoso.com"}]
    assert mail["subject"] == "ci-a stops at 21:00"
    assert link in wire.standins.sendgrid.content_of(mail, "text/plain")
    wire.mail(at=wire.SWEEP_AT + timedelta(minutes=50))
    assert len(wire.mails()) == 1  # one reminder per stop time


def test_a_later_choice_for_the_whole_night_wins_over_one_hour(wire):
    seed(wire, "ci-a")
    wire.mail()
    link = wire.link("ci-a")
    wire.click("POST", link, delay="60")
    page = wire.click("POST", link, delay="night")
    assert "ci-a keeps running tonight" in page.get_body().decode()
    again = wire.click("POST", link, delay="60")  # from a page opened earlier: the night holds
    assert "Someone else asked to keep it longer" in again.get_body().decode()
    for minutes in (0, 60, 120, 180):
        wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=minutes))
    assert wire.standins.stopped_names() == []


def test_a_forged_delay_is_refused_and_writes_nothing(wire):
    seed(wire, "ci-a")
    wire.mail()
    for forged in ("5000", "30", "0", "-60", "nights"):
        page = wire.click("POST", wire.link("ci-a"), delay=forged)
        assert page.status_code == 400 and "not (or no longer) available" in page.get_body().decode()
    assert wire.ledger() == []


def test_after_its_stop_the_link_says_so(wire):
    seed(wire, "ci-a")
    wire.mail()
    link = wire.link("ci-a")
    wire.click("POST", link, delay="60")
    wire.sweep()
    wire.now = wire.SWEEP_AT + timedelta(minutes=40)
    assert "Stop it at 22:00 instead" in wire.click("GET", link).get_body().decode()  # back at 20:40
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=60))
    wire.now = wire.SWEEP_AT + timedelta(minutes=61)
    assert wire.click("GET", link).status_code == 410


def test_the_table_adapter_merges_clicks_latest_wins_and_marks_over_what_it_read(azurite):
    ledger = TableCancelLedger(azurite.connection_string, "delays")
    target = WorkspaceTarget("00000000-1111-2222-3333-444444444444", "rg", "ws")
    night = Night(target, date(2026, 11, 24), datetime(2026, 11, 24, 19, tzinfo=UTC))
    at = night.shutdown_at

    def click(until, who):
        return ledger.record(night, Cancellation("arm", "ci-a", night.day, at, "ip", "ua", until, who))

    new, keep = click(at + timedelta(hours=1), "a@contoso.com")
    assert new and keep.until == at + timedelta(hours=1) and keep.recipient == "a@contoso.com"
    assert click(at + timedelta(minutes=30), "b@contoso.com")[1].until == at + timedelta(hours=1)
    _, longer = click(at + timedelta(hours=2), "b@contoso.com")
    assert longer.until == at + timedelta(hours=2) and ledger.keep(night, "CI-A").recipient == "b@contoso.com"
    assert ledger.mark(night, keep, stopping=True) is None  # read before the last click: refused
    marked = ledger.mark(night, longer, stopping=True)
    assert marked.stopping and ledger.kept_instances(night)["ci-a"].stopping
    assert click(None, "c@contoso.com")[1].until == at + timedelta(hours=2)  # stopping: no click changes it
