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
    # The host is down from 20:30 until every window of the night has closed: the delayed stop's
    # (21:00-23:00) and a late notice's (the catch-up window, the minimum notice and a catch-up again).
    rules = world.app.estate.single().calendar.rules
    with pytest.raises(RunFailedError) as failed:
        world.at(MON_S + rules.catch_up + rules.last_stop + minutes(5)).sweep()
    assert list(failed.value.failures) == ["ci-bob"] and "ran all night" in failed.value.failures["ci-bob"]
    night = world.app.estate.single().calendar.night(MON_S.date())
    assert world.ledger.night_record(night, SWEEP).state == "partly missed"
    report = next(m for m in world.mailer.sent if m.to == "finops@contoso.com")
    assert "every targeted running instance" not in report.text and "nothing was stopped" not in report.text
    assert "ci-bob was not stopped: its delayed stop at 20:00 UTC got no tick" in report.text
    assert "stopped at 20:00" in report.text  # ci-alice, whose stop the report still counts


# -------------------------------------------- 3. an instance started after the mail gets its own notice
def late_world(**settings) -> World:
    world = World(*team(), now=MON_S - minutes(60), warning_minutes="60", **settings)
    world.mail()  # 19:00: the warning mail tells about ci-alice and ci-bob
    return world


def ticks(world: World, first: timedelta, last: timedelta) -> None:
    """Both timers, every five minutes (a failed run is monitoring's business, not this test's)."""
    at = MON_S + first
    while at <= MON_S + last:
        world.at(at)
        for run in (world.mail, world.sweep):
            try:
                run()
            except RunFailedError:
                pass
        at += minutes(5)


def test_an_instance_started_after_the_mail_is_told_on_the_next_tick_and_stopped_after_the_notice():
    world = late_world()
    world.compute.instances["ci-carol"] = Instance("ci-carol", "Running", "carol@contoso.com")  # 19:40
    ticks(world, -minutes(20), minutes(40))
    (late,) = [m for m in world.mailer.sent if "ci-carol" in m.instances]
    assert late.to == "ml-team@contoso.com" and late.instances == ("ci-carol",)  # only what is new to them
    assert "at 20:10" in late.text and "started after this evening's first notice" in late.text
    stops = [(name, at) for name, at in world.compute.stopped_at]
    assert ("ci-carol", MON_S + minutes(10)) in stops  # told 19:40 + 30 min, the first tick at or after
    assert ("ci-alice", MON_S) in stops and ("ci-bob", MON_S) in stops
    assert world.link("ci-carol").sent_at == MON_S - minutes(20)


def test_an_instance_started_just_before_the_shutdown_is_held_and_its_late_link_keeps_it():
    world = late_world()
    world.compute.instances["ci-carol"] = Instance("ci-carol", "Running", "carol@contoso.com")  # 19:58
    ticks(world, minutes(0), minutes(0))
    assert sorted(n for n, _ in world.compute.stopped_at) == ["ci-alice", "ci-bob"]
    late = world.link("ci-carol")
    assert late.sent_at == MON_S and "at 20:30" in late.mail.text
    page = world.at(MON_S + minutes(10)).click(late, "GET")
    assert page.outcome is Outcome.CONFIRM and page.in_force.until == MON_S + minutes(30)
    assert world.click(late, "POST", delay="night").outcome is Outcome.KEPT
    ticks(world, minutes(15), minutes(120))
    assert "ci-carol" not in [n for n, _ in world.compute.stopped_at]


def test_a_late_sweep_after_a_missed_mail_tells_first_and_stops_only_after_the_notice(caplog):
    world = World(*team(), now=MON_S + minutes(10), warning_minutes="60")  # the host was down 18:55-20:05
    ticks(world, minutes(10), minutes(40))
    (mail,) = world.mailer.sent
    assert "at 20:40" in mail.text
    assert all(at == MON_S + minutes(40) for _, at in world.compute.stopped_at) and world.compute.stopped_at
    assert "late notice 2 (held until 20:40, 20:40)" in caplog.text


def test_a_dry_run_says_which_instances_a_late_notice_holds(caplog):
    world = late_world(dry_run="true")
    world.compute.instances["ci-carol"] = Instance("ci-carol", "Running", "carol@contoso.com")
    ticks(world, minutes(0), minutes(0))
    assert world.compute.stop_calls == [] and "late notice 1 (held until 20:30)" in caplog.text
    assert "would stop 2" in caplog.text


def test_the_report_shows_a_held_instance_and_then_its_stop():
    world = late_world(report_emails="finops@contoso.com")
    world.compute.instances["ci-carol"] = Instance("ci-carol", "Running", "carol@contoso.com")
    ticks(world, minutes(0), minutes(0))
    (row,) = [r for (_, name), r in world.ledger.rows.items() if name == "ci-carol"]
    assert row.outcome == "held for its notice" and row.kept_until == MON_S + minutes(30)
    ticks(world, minutes(5), minutes(30))
    (row,) = [r for (_, name), r in world.ledger.rows.items() if name == "ci-carol"]
    assert row.outcome == "stopped" and row.stopped_at == MON_S + minutes(30)
