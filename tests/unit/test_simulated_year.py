"""A simulated year: the two timers ticking every five minutes for 365 nights, with a fake clock.

Europe/Berlin and America/New_York, across both DST changes, shutdown_days=Mon-Fri, a holiday calendar
and a skip range. Around every shutdown people click links at random moments; jobs start and end;
owners restart stopped instances; every adapter fails now and then (a transient error, retried or
not); the host is down from 10 minutes before one shutdown to 20 minutes after it. The asserts are the
promises of the README: one mail per recipient per shutdown night and none on other days; stops at the
first tick at or after the shutdown (or after recovery, or a failed tick); never a stop against an
honoured keep, of an opted-out or busy instance, nor twice in a night; never a success page that was
not honoured; every failure a failed run.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.cancellation import CancelRequest, Outcome, keep_instance_tonight
from shared.domain import ClientInfo, Instance, StopOutcome
from shared.errors import AutoShutdownError, TransientServiceError
from shared.links import CancelGrant, LinkSigner
from shared.notices import MailOptions, send_shutdown_notices
from shared.reminders import ReminderOptions, send_reminders
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.sweep import SweepOptions, stop_unclaimed_instances
from tests.fakes import FakeLedger, FakeMailer, environ

TICK = timedelta(minutes=5)
START = date(2026, 1, 1)
DAYS = 365
OWNERS = {"ci-alice": "alice", "ci-bob": "bob", "ci-carol": "carol", "ci-dave": "dave", "ci-erin": "erin"}
TAGS = {"ci-carol": (("auto-shutdown", "never"),), "ci-erin": (("auto-shutdown", "2026-06-30"),)}
TEAM = "ml-team@contoso.com"
DELAYS, CHOICES, REMINDER = (60, 120), ("60", "120", "night"), timedelta(minutes=15)
FAILURE_RATE = 0.12  # per remote call; four tries in a row fail about 1 in 5,000 calls


class Flaky:
    """Wraps a fake: each call may fail with a transient error first. `save` and `mark` never fail four
    times in a row: a mail run or a reminder whose record is lost after sending would mail again (at
    least once, as the README says)."""

    def __init__(self, inner, rng: random.Random, service: str):
        self.inner, self.rng, self.service, self.calls = inner, rng, service, 0
        self._save_failures = 0

    def __getattr__(self, name):
        target = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls += 1
            fail = self.rng.random() < FAILURE_RATE
            if name in ("save", "mark"):
                fail = fail and self._save_failures < 3
                self._save_failures = self._save_failures + 1 if fail else 0
            if fail:
                raise TransientServiceError(self.service, f"injected failure of {name}")
            return target(*args, **kwargs)

        return call


class SimWorkspace:
    """Like ARM: a stop stops whatever it is told to. Being careful is the app's job, and checked here."""

    def __init__(self):
        self.states = {name: "Running" for name in OWNERS}  # the simulation starts at noon
        self.stops: list[tuple[str, datetime]] = []
        self.violations: list[str] = []
        self.now = datetime.min.replace(tzinfo=UTC)

    def list_instances(self) -> list[Instance]:
        return [Instance(n, s, f"{OWNERS[n]}@contoso.com", TAGS.get(n, ())) for n, s in self.states.items()]

    def stop(self, name: str) -> StopOutcome:
        if self.states[name] == "JobRunning":
            self.violations.append(f"{self.now}: stopped {name} while it ran a job")
        if self.states[name] not in ("Running", "JobRunning"):
            return StopOutcome.NOT_RUNNING
        self.states[name] = "Stopped"
        self.stops.append((name, self.now))
        return StopOutcome.STOPPED


@dataclass
class Year:
    zone: str
    holidays: str
    rng: random.Random
    mails: list[tuple[str, date, datetime]] = field(default_factory=list)
    reminders: list[tuple[str, date, str, datetime]] = field(default_factory=list)
    successes: list[tuple[str, date]] = field(default_factory=list)
    failed_runs: list[tuple[str, datetime, str]] = field(default_factory=list)
    ticks_with_calls_outside_windows: int = 0

    def __post_init__(self):
        settings = Settings.from_environ(
            environ(
                time_zone=self.zone, shutdown_days="Mon-Fri", holidays=self.holidays, skip_dates="2026-08-10..2026-08-14",
                warning_minutes="60", catch_up_minutes="120", notify_instance_owner="true", to_emails=TEAM,
            )
        )  # fmt: skip
        self.calendar = ShutdownCalendar(settings.target(), settings.calendar_rules())
        self.signer = LinkSigner(settings.cancel_link_secret)
        self.options = MailOptions(settings.cancel_url, settings.subject, (TEAM,), True)
        self.reminder_options = ReminderOptions(settings.cancel_url, 15)
        self.workspace = SimWorkspace()
        self.ledger_fake, self.mailer_fake = FakeLedger(), FakeMailer()
        self.ledger = Flaky(self.ledger_fake, self.rng, "Table Storage")
        self.mailer = Flaky(self.mailer_fake, self.rng, "SendGrid")
        self.compute = Flaky(self.workspace, self.rng, "AzureML")
        self.policy = RetryPolicy(attempts=4, sleep=lambda s: None, jitter=lambda: 0.5, clock=lambda: 0.0)

    def run(self) -> None:
        # From noon UTC the day before START to noon UTC the day after the last: every window of
        # every night in between, in both zones, and of no other night.
        nights = [n for d in range(-1, DAYS + 1) if (n := self.calendar.night(START + timedelta(days=d)))]
        outage_night = nights[len(nights) // 2]
        self.outage = (
            outage_night.shutdown_at - timedelta(minutes=10),
            outage_night.shutdown_at + timedelta(minutes=20),
        )
        self.nights = nights
        clicks = self._plan_clicks(nights)
        now = datetime.combine(START, datetime.min.time(), tzinfo=UTC) - timedelta(hours=12)
        end = now + timedelta(days=DAYS + 2)
        while now < end:
            self._world(now)
            for at, instance, night, delay in sorted(clicks.pop(now, ()), key=lambda click: click[0]):
                self._click(at, instance, night, delay)
            if not self.outage[0] <= now <= self.outage[1]:
                self._tick(now)
            now += TICK

    # --------------------------------------------------------------------------------------- the app
    def _tick(self, now: datetime) -> None:
        self.workspace.now = now
        before = self.compute.calls + self.ledger.calls + self.mailer.calls
        for name, run in (("MailSender", self._mail), ("ComputeShutdown", self._sweep)):
            try:
                run(now)
            except AutoShutdownError as error:
                self.failed_runs.append((name, now, str(error)))
        if self.compute.calls + self.ledger.calls + self.mailer.calls != before:
            due = self.calendar.mail_due(now) or self.calendar.sweep_due(now) or self.calendar.audit_due(now)
            self.ticks_with_calls_outside_windows += not due

    def _mail(self, now: datetime) -> None:
        sent = len(self.mailer_fake.sent)
        try:
            send_shutdown_notices(now, self.calendar, self.options, self.signer, self.compute, self.ledger,
                                  self.mailer, self.policy)  # fmt: skip
        finally:  # a run that fails for one recipient has still mailed the others
            if len(self.mailer_fake.sent) > sent:
                night = self.calendar.mail_due(now)
                self.mails += [(mail.to, night.day, now) for mail in self.mailer_fake.sent[sent:]]
        sent = len(self.mailer_fake.sent)
        try:
            send_reminders(
                now, self.calendar, self.reminder_options, self.signer, self.ledger, self.mailer, self.policy
            )
        finally:
            night = self.calendar.reminder_due(now, REMINDER)
            self.reminders += [
                (m.instances[0], night.day, m.subject, now) for m in self.mailer_fake.sent[sent:]
            ]

    def _sweep(self, now: datetime) -> None:
        stop_unclaimed_instances(now, self.calendar, self.compute, self.ledger, SweepOptions(), self.policy,
                                 clock=lambda: 0.0)  # fmt: skip

    def _click(self, at: datetime, instance: str, night, delay: str) -> None:
        owner = f"{OWNERS[instance]}@contoso.com"  # the link from the owner's own mail
        token = self.signer.sign(
            CancelGrant(night.target.arm_id, instance, night.day, night.shutdown_at, owner)
        )
        for method in ("GET", "POST"):
            request = CancelRequest(method, token, ClientInfo("203.0.113.9", "sim"), delay)
            try:
                result = keep_instance_tonight(request, at, self.calendar, self.signer, self.ledger, DELAYS,
                                               self.policy, sleep=lambda s: None)  # fmt: skip
            except AutoShutdownError:
                return  # an error page: nothing promised
            if result.outcome in (Outcome.KEPT, Outcome.ALREADY_KEPT):
                self.successes.append((instance, night.day, result.in_force.until, at))

    # ---------------------------------------------------------------------------------- the people
    def _plan_clicks(self, nights) -> dict[datetime, list]:
        clicks = defaultdict(list)
        for night in nights:
            for instance in self.rng.sample(sorted(OWNERS), 2):
                at = night.shutdown_at + timedelta(
                    minutes=self.rng.randint(-70, 30), seconds=self.rng.randint(0, 59)
                )
                clicks[_tick_before(at)].append((at, instance, night, self.rng.choice(CHOICES)))
                if self.rng.random() < 0.4:  # a change of mind, before or after the shutdown
                    later = at + timedelta(minutes=self.rng.randint(5, 100))
                    clicks[_tick_before(later)].append((later, instance, night, self.rng.choice(CHOICES)))
        return clicks

    def _world(self, now: datetime) -> None:
        local = now.astimezone(self.calendar.rules.zone)
        states = self.workspace.states
        if local.hour == 8 and local.minute == 0:  # owners start their instances in the morning
            for name in OWNERS:
                states[name] = "Running"
        for name, state in states.items():  # jobs start and end; owners restart stopped instances
            roll = self.rng.random()
            if state == "Running" and roll < 0.004:
                states[name] = "JobRunning"
            elif (state == "JobRunning" and roll < 0.05) or (
                state == "Stopped" and 18 <= local.hour <= 23 and roll < 0.01
            ):
                states[name] = "Running"


def _tick_before(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)


@pytest.mark.parametrize(("zone", "holidays"), [("Europe/Berlin", "DE-BY"), ("America/New_York", "US-NY")])
def test_a_simulated_year(zone, holidays, capsys):
    year = Year(zone, holidays, random.Random(f"year-{zone}"))
    year.run()
    calendar, workspace, ledger = year.calendar, year.workspace, year.ledger_fake
    nights = {night.day: night for night in year.nights}
    assert 230 <= len(nights) <= 255  # weekdays less holidays and the skip week

    # Mail: exactly one per recipient per shutdown night, inside its window; none on other days.
    per_night = Counter((to, day) for to, day, _ in year.mails)
    assert all(count == 1 for count in per_night.values()), [k for k, c in per_night.items() if c > 1]
    assert {day for _, day, _ in year.mails} == set(nights)
    for _to, day, at in year.mails:
        assert nights[day].shutdown_at - timedelta(minutes=60) <= at < nights[day].shutdown_at
    for day in nights:
        assert (TEAM, day) in per_night
        assert ("carol@contoso.com", day) not in per_night  # opted out with `never`

    # The keeps at the end of each night: the latest stop time wins, so that is the latest one asked.
    def day_of(key: str) -> date:
        return date.fromisoformat(key.rsplit("|", 1)[1])

    final = {(keep.instance, day_of(key)): keep for (key, _), keep in ledger.keeps.items()}
    sweeps = {day_of(key): record for (key, kind), record in ledger.nights.items() if kind == "sweep"}
    honoured = {(name, day): final[(name, day)] for day, r in sweeps.items() for name in r.kept or ()}

    # Stops: never before the time in force, at the first live tick at or after it (unless a run of that
    # night failed first), never of an instance kept all night, never twice a night.
    stops_per_night = Counter()
    failed_sweeps = [at for name, at, _ in year.failed_runs if name == "ComputeShutdown"]
    for name, at in workspace.stops:
        night = calendar.sweep_due(at)
        assert night is not None, f"{name} stopped at {at}, outside every sweep window"
        stops_per_night[(name, night.day)] += 1
        keep = honoured.get((name, night.day))
        assert keep is None or keep.until is not None, f"{name} kept all night on {night.day}, yet stopped"
        due = night.shutdown_at if keep is None else keep.until
        assert at >= due, f"{name} stopped at {at}, before its time {due}"
        first_tick = due  # shutdowns and delays fall on the five-minute grid of the ticks
        while year.outage[0] <= first_tick <= year.outage[1]:
            first_tick += TICK
        if at != first_tick:
            assert any(first_tick <= failed <= at for failed in failed_sweeps), (name, at, first_tick)
        assert name != "ci-carol" and not (name == "ci-erin" and night.day <= date(2026, 6, 30))
    assert all(count == 1 for count in stops_per_night.values())  # never twice a night (restarts)
    assert workspace.violations == []  # never a busy instance
    for (name, day), keep in honoured.items():  # every delayed keep was dealt with when its time came
        if keep.until is not None:
            assert name.lower() in {n.lower() for n in sweeps[day].done}, f"{name}'s delay on {day} forgotten"

    # Success pages: honoured, and never shortened by a later click.
    for instance, day, until, _at in year.successes:
        keep = final[(instance, day)]
        assert (instance, day) in honoured, f"success page for {instance} on {day}, not honoured"
        assert keep.later(until) == keep.until, f"{instance} on {day}: a success page's time was shortened"

    # Reminders: one per stop time, to the owner, before it; the time in force always has one unless it
    # was set less than a tick before it.
    reminded = Counter((instance, day, subject) for instance, day, subject, _ in year.reminders)
    assert all(count == 1 for count in reminded.values()), [k for k, c in reminded.items() if c > 1]
    last_click = {(i, d): at for i, d, _, at in year.successes}
    zone = calendar.rules.zone
    for (name, day), keep in honoured.items():
        if keep.until is not None and keep.until - last_click[(name, day)] > REMINDER + TICK:
            assert (name, day, f"{name} stops at {keep.until.astimezone(zone):%H:%M}") in reminded, (
                name,
                day,
            )

    # Failures surface: every sweep ends done or missed, every missed night failed a run.
    assert all(record.state in ("done", "missed") for record in sweeps.values())
    missed = [record for record in sweeps.values() if record.state == "missed"]
    assert len([f for f in year.failed_runs if "missed" in f[2]]) == len(missed)
    assert year.ticks_with_calls_outside_windows == 0

    kept = len(honoured)
    delayed = sum(1 for keep in honoured.values() if keep.until is not None)
    with capsys.disabled():
        print(
            f"\n  simulated year {zone}: {len(nights)} nights, {len(year.mails)} mails, {len(workspace.stops)} stops, "
            f"{kept} keeps honoured ({delayed} delayed), {len(year.reminders)} reminders, "
            f"{len(year.successes)} success pages, {len(missed)} missed, "
            f"{len(year.failed_runs)} failed runs"
        )
