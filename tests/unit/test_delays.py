"""Stop it later instead of never: the choices offered, the latest-wins rule, delayed stops and reminders."""

import logging
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.cancellation import CancelRequest, Outcome, form_delay, keep_instance_tonight
from shared.delays import NIGHT, chosen, label, offered
from shared.domain import ClientInfo, Instance, Keep
from shared.errors import ExpiredLinkError, InvalidChoiceError
from shared.links import CancelGrant, LinkSigner
from shared.pages import for_result
from shared.reminders import ReminderOptions, send_reminders
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.sweep import SweepOptions, stop_unclaimed_instances
from tests.fakes import TEST_SECRET, FakeLedger, FakeMailer, FakeWorkspace, environ

S = datetime(2026, 11, 24, 19, tzinfo=UTC)  # 20:00 Berlin
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda s: None)
SIGNER = LinkSigner(TEST_SECRET)


def calendar(**overrides) -> ShutdownCalendar:
    settings = Settings.from_environ(environ(**overrides))
    return ShutdownCalendar(settings.target(), settings.calendar_rules())


CAL = calendar()
TONIGHT = CAL.night(S.date())


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


# ------------------------------------------------------------------------------------ choices
def test_before_the_shutdown_every_delay_and_the_night_are_offered():
    choices = offered(TONIGHT, S - minutes(30), (60, 120), None)
    assert [(c.value, c.until) for c in choices] == [
        ("60", S + minutes(60)),
        ("120", S + minutes(120)),
        (NIGHT, None),
    ]


def test_only_later_stop_times_than_now_and_than_the_keep_in_force_are_offered():
    in_force = Keep("ci-a", S + minutes(60))
    assert [c.value for c in offered(TONIGHT, S + minutes(40), (60, 120), in_force)] == ["120", NIGHT]
    assert [c.value for c in offered(TONIGHT, S + minutes(70), (60, 120), None)] == ["120", NIGHT]
    assert [c.value for c in offered(TONIGHT, S - minutes(5), (), None)] == [NIGHT]  # keep-tonight only


def test_a_post_without_delay_keeps_it_all_night_and_an_unoffered_value_is_refused():
    choices = offered(TONIGHT, S - minutes(5), (60, 120), None)
    assert chosen(None, choices).until is None
    assert chosen(" 60 ", choices).until == S + minutes(60)
    for forged in ("5000", "30", "-60", "NIGHTS", ""):
        with pytest.raises(InvalidChoiceError):
            chosen(forged, choices)


def test_the_latest_stop_time_wins():
    assert Keep("a", S + minutes(60)).later(S + minutes(120)) == S + minutes(120)
    assert Keep("a", S + minutes(120)).later(S + minutes(60)) == S + minutes(120)
    assert Keep("a", S + minutes(60)).later(None) is None and Keep("a", None).later(S + minutes(60)) is None


@pytest.mark.parametrize(
    ("content_type", "body", "delay"),
    [
        ("application/x-www-form-urlencoded", b"delay=60", "60"),
        ("application/x-www-form-urlencoded; charset=UTF-8", b"delay=night&x=1", "night"),
        ("application/x-www-form-urlencoded", b"", None),
        ("multipart/form-data; boundary=x", b"delay=60", None),
        (None, b"delay=60", None),
        ("application/x-www-form-urlencoded", b"delay=" + b"9" * 2000, None),
        ("application/x-www-form-urlencoded", "delay=ä".encode(), None),
    ],
)
def test_the_delay_is_read_only_from_a_small_urlencoded_form(content_type, body, delay):
    assert form_delay(content_type, body) == delay


# ------------------------------------------------------------------------------------ clicks
def click(ledger, at, delay=None, method="POST", recipient="alice@contoso.com", **overrides):
    cal = calendar(**overrides)
    night = cal.next_night(S - minutes(60))
    token = SIGNER.sign(CancelGrant(night.target.arm_id, "ci-a", night.day, night.shutdown_at, recipient))
    request = CancelRequest(method, token, ClientInfo("203.0.113.5", "UA"), delay)
    return keep_instance_tonight(request, at, cal, SIGNER, ledger, (60, 120), NO_WAIT, sleep=lambda s: None)


def test_a_delay_is_stored_with_whose_link_it_was_and_a_later_choice_wins():
    ledger = FakeLedger()
    first = click(ledger, S - minutes(10), "60")
    assert first.outcome is Outcome.KEPT and first.in_force.until == S + minutes(60)
    (cancellation,) = ledger.records.values()
    assert (cancellation.recipient, cancellation.client_ip) == ("alice@contoso.com", "203.0.113.5")
    same = click(ledger, S - minutes(5), "60", recipient="bob@contoso.com")
    assert same.in_force.until == S + minutes(60)
    longer = click(ledger, S - minutes(3), "120")
    assert longer.outcome is Outcome.KEPT and longer.in_force.until == S + minutes(120)
    night = click(ledger, S - minutes(1), NIGHT)
    assert night.in_force.until is None
    outbid = click(ledger, S - minutes(1), "60")  # from a page opened earlier: no error, the night holds
    assert outbid.outcome is Outcome.ALREADY_KEPT and outbid.in_force.until is None


def test_a_kept_instance_s_link_works_after_the_shutdown_until_it_is_being_stopped():
    ledger, workspace = FakeLedger(), FakeWorkspace(Instance("ci-a", "Running"))
    ledger.told(TONIGHT, "ci-a")
    click(ledger, S - minutes(10), "60")
    stop_unclaimed_instances(S + minutes(1), CAL, workspace, ledger, SweepOptions(), NO_WAIT)
    page = click(ledger, S + minutes(40), method="GET")
    assert [c.value for c in page.choices] == ["120", NIGHT]  # come back at 20:40, choose +2 h
    assert click(ledger, S + minutes(40), "120").in_force.until == S + minutes(120)
    stop_unclaimed_instances(S + minutes(60), CAL, workspace, ledger, SweepOptions(), NO_WAIT)
    assert workspace.stopped == []  # not before the time in force
    stop_unclaimed_instances(S + minutes(120), CAL, workspace, ledger, SweepOptions(), NO_WAIT)
    assert workspace.stopped == ["ci-a"]
    with pytest.raises(ExpiredLinkError):
        click(ledger, S + minutes(121), method="GET")


def test_an_instance_never_kept_cannot_be_kept_after_the_shutdown():
    ledger = FakeLedger()
    ledger.told(TONIGHT, "ci-a")
    stop_unclaimed_instances(
        S + minutes(1), CAL, FakeWorkspace(Instance("ci-a", "Running")), ledger, SweepOptions(), NO_WAIT
    )
    with pytest.raises(ExpiredLinkError):
        click(ledger, S + minutes(10), "60")


def test_a_click_that_lands_after_the_sweep_marked_the_instance_stopping_is_told_so():
    ledger, workspace = FakeLedger(), FakeWorkspace(Instance("ci-a", "Running"))
    ledger.told(TONIGHT, "ci-a")
    click(ledger, S - minutes(10), "60")
    stop_unclaimed_instances(S + minutes(1), CAL, workspace, ledger, SweepOptions(), NO_WAIT)
    (key,) = ledger.keeps
    ledger.keeps[key] = ledger.mark(TONIGHT, ledger.keeps[key], stopping=True)  # the sweep, a moment earlier
    with pytest.raises(ExpiredLinkError, match="being stopped"):
        click(ledger, S + minutes(59), "120")
    assert ledger.keeps[key].until == S + minutes(60)


# ------------------------------------------------------------------------------------ the sweep
def test_delayed_instances_are_stopped_at_the_first_tick_at_or_after_their_time(caplog):
    caplog.set_level(logging.INFO)
    ledger = FakeLedger()
    workspace = FakeWorkspace(*(Instance(n, "Running") for n in ("ci-a", "ci-b", "ci-c")))
    ledger.told(TONIGHT, "ci-a", "ci-b", "ci-c")
    for name, delay in (("ci-a", "60"), ("ci-b", "120")):
        token = SIGNER.sign(CancelGrant(TONIGHT.target.arm_id, name, TONIGHT.day, S, "x@contoso.com"))
        keep_instance_tonight(CancelRequest("POST", token, ClientInfo(), delay), S - minutes(5), CAL, SIGNER,
                              ledger, (60, 120), NO_WAIT, sleep=lambda s: None)  # fmt: skip
    for tick in range(0, 150, 5):
        stop_unclaimed_instances(S + minutes(tick), CAL, workspace, ledger, SweepOptions(), NO_WAIT)
        stopped = set(workspace.stopped)
        assert ("ci-a" in stopped) == (tick >= 60) and ("ci-b" in stopped) == (tick >= 120)
    assert "delayed 2 (until 21:00, 22:00), late notice 0, failed 0" in caplog.text
    assert "delayed stops: stopped 1 [ci-a], still delayed 1 (until 22:00), failed 0" in caplog.text
    assert ledger.nights[(TONIGHT.key, "sweep")].state == "done"


def test_a_dry_run_says_what_it_would_do_at_each_delayed_time(caplog):
    caplog.set_level(logging.INFO)
    ledger, workspace = FakeLedger(), FakeWorkspace(Instance("ci-a", "Running"))
    ledger.told(TONIGHT, "ci-a")
    click(ledger, S - minutes(5), "60")
    for tick in (0, 60):
        stop_unclaimed_instances(
            S + minutes(tick), CAL, workspace, ledger, SweepOptions(dry_run=True), NO_WAIT
        )
    assert workspace.stop_calls == [] and "Dry run: would stop ci-a now (kept until" in caplog.text
    assert "delayed stops: would stop 1 [ci-a]" in caplog.text


# ------------------------------------------------------------------------------------ reminders
def remind(ledger, mailer, at, minutes_before=15):
    options = ReminderOptions("https://h/api/CancelShutDown?code=k", minutes_before)
    return send_reminders(at, CAL, options, SIGNER, ledger, mailer, NO_WAIT)


def test_one_reminder_per_stop_time_to_the_person_whose_link_delayed_it():
    ledger, mailer = FakeLedger(), FakeMailer()
    click(ledger, S - minutes(10), "60")
    sent = [remind(ledger, mailer, S + minutes(m)) for m in range(0, 60, 5)]
    assert [m for m, reminded in zip(range(0, 60, 5), sent, strict=True) if reminded] == [45]
    (mail,) = mailer.sent
    assert mail.to == "alice@contoso.com" and mail.subject == "ci-a stops at 21:00"
    assert "about 15 minutes" in mail.text and "token=" in mail.text
    click(ledger, S + minutes(50), "120")  # a new stop time gets a reminder of its own
    later = [remind(ledger, mailer, S + minutes(m)) for m in range(50, 120, 5)]
    assert sum(1 for r in later if r) == 1 and len(mailer.sent) == 2


def test_no_reminder_when_set_to_zero_or_for_keeps_all_night():
    ledger, mailer = FakeLedger(), FakeMailer()
    click(ledger, S - minutes(10), NIGHT)
    assert remind(ledger, mailer, S + minutes(45)) == ()
    assert remind(ledger, mailer, S + minutes(45), minutes_before=0) == () and ledger.queries == [TONIGHT.key]


# ------------------------------------------------------------------------------------ labels
# Berlin's autumn night: a 02:30 shutdown is the first 02:30 (CEST, 00:30 UTC); an hour later it is 02:30
# again (CET). Only the zone tells the two apart.
AUTUMN = calendar(shutdown_time="02:30", shutdown_days="Mon-Sun", holidays="")
AUTUMN_NIGHT = AUTUMN.night(date(2026, 10, 25))


def test_a_choice_in_another_utc_offset_than_the_shutdown_names_its_zone():
    zone = AUTUMN.rules.zone
    choices = offered(AUTUMN_NIGHT, AUTUMN_NIGHT.shutdown_at - minutes(30), (60, 120), None)
    assert [label(c, "ci-a", AUTUMN_NIGHT, zone) for c in choices] == [
        "Stop it at 02:30 CET instead", "Stop it at 03:30 CET instead", "Keep ci-a running tonight",
    ]  # fmt: skip
    ordinary = offered(TONIGHT, S - minutes(30), (60,), None)
    assert [label(c, "ci-a", TONIGHT, CAL.rules.zone) for c in ordinary] == [
        "Stop it at 21:00 instead", "Keep ci-a running tonight",
    ]  # fmt: skip


def test_the_autumn_night_s_pages_tell_the_two_02_30s_apart():
    ledger, at = FakeLedger(), AUTUMN_NIGHT.shutdown_at - minutes(30)
    grant = CancelGrant(
        AUTUMN_NIGHT.target.arm_id, "ci-a", AUTUMN_NIGHT.day, AUTUMN_NIGHT.shutdown_at, "a@contoso.com"
    )

    def page(method, delay=None) -> str:
        request = CancelRequest(method, SIGNER.sign(grant), ClientInfo("203.0.113.5", "UA"), delay)
        result = keep_instance_tonight(
            request, at, AUTUMN, SIGNER, ledger, (60, 120), NO_WAIT, sleep=lambda s: None
        )
        return for_result(result).body

    confirm = page("GET")
    assert "at 02:30 CEST (Europe/Berlin)" in confirm
    assert 'value="60" class="later">Stop it at 02:30 CET instead</button>' in confirm
    kept = page("POST", "60")
    assert "ci-a now stops at 02:30 CET" in kept
    assert "will be stopped at <strong>02:30 CET</strong> instead of 02:30 CEST." in kept


def test_the_kept_page_says_what_is_in_force_and_what_it_was():
    ledger = FakeLedger()
    kept = for_result(click(ledger, S - minutes(10), "60")).body
    assert '<dt>Now stops at</dt><dd>21:00 <span class="muted">(was 20:00)</span></dd>' in kept
    assert "Postponed shutdown" not in kept


def test_the_expired_link_page_names_the_instance_and_when_it_was_stopped():
    ledger = FakeLedger()
    ledger.told(TONIGHT, "ci-a")
    stop_unclaimed_instances(
        S + minutes(1), CAL, FakeWorkspace(Instance("ci-a", "Running")), ledger, SweepOptions(), NO_WAIT
    )
    with pytest.raises(ExpiredLinkError) as page:
        click(ledger, S + minutes(10), method="GET")
    assert str(page.value).startswith(
        "ci-a was stopped by the shutdown on Tuesday 24 November 2026 at 20:00 CET"
    )
    assert "Start ci-a again" in page.value.advice and " 0" not in str(page.value).split("2026")[0]


def test_reopening_the_link_of_an_instance_kept_all_night_shows_its_status_not_an_empty_choice():
    ledger = FakeLedger()
    click(ledger, S - minutes(42), NIGHT, recipient="ml-team@contoso.com")
    for at in (S - minutes(5), S + minutes(30)):  # before and after the shutdown
        page = for_result(click(ledger, at, method="GET", recipient="ml-team@contoso.com")).body
        assert (
            "<strong>ci-a</strong> is kept running tonight (by ml-team@contoso.com at 19:18). Nothing more to do."
            in page
        )
        assert "Nothing has changed yet" not in page and "Keep ci-a running?" not in page
