"""Holes found where two features meet (issue 19), each pinned by the example that showed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.cancellation import Outcome
from shared.domain import Instance
from shared.errors import ExpiredLinkError, RunFailedError, ServiceError
from shared.nightly import SWEEP
from tests.promises.world import World

MON_S = datetime(2026, 11, 23, 19, tzinfo=UTC)  # Monday 20:00 Berlin
DAY = timedelta(days=1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def team() -> tuple[Instance, ...]:
    return (
        Instance("ci-alice", "Running", "alice@contoso.com"),
        Instance("ci-bob", "Running", "bob@contoso.com"),
    )


# ------------------------------------------------------------- 1. an old link on a later evening
def test_a_link_kept_all_night_speaks_for_its_own_night_only():
    world = World(*team(), now=MON_S - minutes(180))
    world.mail()
    monday = world.link("ci-alice")
    assert world.at(MON_S - minutes(30)).click(monday).outcome is Outcome.KEPT
    world.at(MON_S).sweep()
    assert world.compute.stop_calls == ["ci-bob"]
    world.compute.set_state("ci-bob", "Running")  # Tuesday: both run again

    world.at(MON_S + DAY - minutes(180)).mail()  # Tuesday's warning has started
    world.at(MON_S + DAY - minutes(30))
    with pytest.raises(ExpiredLinkError) as page:
        world.click(monday, "GET")
    assert "Monday 23 November" in str(page.value) and "this evening's e-mail" in page.value.advice
    writes = world.ledger.record_calls
    with pytest.raises(ExpiredLinkError):
        world.click(monday, "POST")
    assert world.ledger.record_calls == writes  # nothing written for Monday, nothing for Tuesday
    world.at(MON_S + DAY).sweep()
    assert sorted(world.compute.stop_calls) == ["ci-alice", "ci-bob", "ci-bob"]


def test_a_kept_link_still_shows_its_keep_after_the_shutdown_until_the_night_is_over():
    world = World(*team(), now=MON_S - minutes(180))
    world.mail()
    world.at(MON_S - minutes(30)).click(world.link("ci-alice"))
    world.at(MON_S).sweep()
    later = world.at(MON_S + minutes(90)).click(world.link("ci-alice"), "GET")
    assert later.outcome is Outcome.CONFIRM and later.in_force.until is None


# ----------------------------------------------------------- 2. a failed stop on a night with a delay
def test_a_failed_stop_is_retried_on_the_next_tick_even_when_another_instance_is_delayed():
    world = World(*team(), now=MON_S - minutes(180))
    world.mail()
    world.at(MON_S - minutes(10)).click(world.link("ci-bob"), delay="60")
    world.compute.stop_errors["ci-alice"].append(ServiceError("Azure ML", "HTTP 400 (try again later)"))
    with pytest.raises(RunFailedError, match="ci-alice"):
        world.at(MON_S).sweep()
    assert world.ledger.night_record(world.app.estate.single().calendar.night(MON_S.date()), SWEEP).state == (
        "incomplete"
    )
    world.at(MON_S + minutes(5)).sweep()
    assert world.compute.instances["ci-alice"].state == "Stopped"
    assert world.compute.instances["ci-bob"].state == "Running"
    world.at(MON_S + minutes(60)).sweep()
    assert world.compute.instances["ci-bob"].state == "Stopped"


def test_a_delayed_stop_that_is_due_runs_while_a_failed_stop_is_still_being_retried():
    world = World(*team(), now=MON_S - minutes(180))
    world.mail()
    world.at(MON_S - minutes(10)).click(world.link("ci-bob"), delay="60")
    world.at(MON_S + minutes(55))  # the host was down: the first sweep tick comes late
    world.compute.stop_errors["ci-alice"] += [ServiceError("Azure ML", "HTTP 400")] * 2
    with pytest.raises(RunFailedError, match="ci-alice"):
        world.sweep()
    with pytest.raises(RunFailedError, match="ci-alice"):
        world.at(MON_S + minutes(60)).sweep()  # ci-bob's time has come; ci-alice fails again
    assert world.compute.instances["ci-bob"].state == "Stopped"
    world.at(MON_S + minutes(65)).sweep()
    assert world.compute.instances["ci-alice"].state == "Stopped"


# ------------------------------------------------------- 6. a delayed stop that got no tick, reported
def test_a_night_whose_delayed_stop_got_no_tick_reports_the_sweep_done_and_that_stop_missed():
    world = World(*team(), now=MON_S - minutes(180), report_emails="finops@contoso.com")
    world.mail()
    world.at(MON_S - minutes(10)).click(world.link("ci-bob"), delay="60")
    world.at(MON_S).sweep()
    assert world.compute.stop_calls == ["ci-alice"]
    # The host is down from 20:30 until the delayed stop's window (21:00-23:00) and the others closed.
    with pytest.raises(RunFailedError) as failed:
        world.at(MON_S + minutes(245)).sweep()
    assert list(failed.value.failures) == ["ci-bob"] and "ran all night" in failed.value.failures["ci-bob"]
    night = world.app.estate.single().calendar.night(MON_S.date())
    assert world.ledger.night_record(night, SWEEP).state == "partly missed"
    report = next(m for m in world.mailer.sent if m.to == "finops@contoso.com")
    assert "every targeted running instance" not in report.text and "nothing was stopped" not in report.text
    assert "ci-bob was not stopped: its delayed stop at 20:00 UTC got no tick" in report.text
    assert "stopped at 20:00" in report.text  # ci-alice, whose stop the report still counts
