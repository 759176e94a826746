"""A simulated year: the two timers ticking every five minutes for 365 nights, with a fake clock.

One deployment, three workspaces in three zones (Europe/Berlin, America/New_York, Asia/Tokyo, each with
its own holidays, through `aml_workspaces`), with the same instance names in each, across every DST
change, shutdown_days=Mon-Fri and a skip range. The app runs as the timers run it: `bootstrap()`
per tick, per click. Around every shutdown people click links at random moments; jobs start and end;
owners restart stopped instances; every adapter fails now and then (a transient error, retried or
not); the host is down from 10 minutes before one shutdown to 20 minutes after it. The asserts are the
promises of the README: one mail per recipient per shutdown night and none on other days; stops at the
first tick at or after the shutdown (or after recovery, or a failed tick); never a stop against an
honoured keep, of an opted-out or busy instance, nor twice in a night; never a success page that was
not honoured; every failure a failed run.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote

import pytest

from shared import app
from shared.cancellation import CancelRequest, Outcome
from shared.domain import ClientInfo, Instance, StopOutcome
from shared.errors import AutoShutdownError, TransientServiceError
from shared.links import CancelGrant
from shared.report import report_day
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from tests.fakes import SINGLE_WORKSPACE_OFF, TEST_SECRET, FakeLedger, FakeMailer, environ

TICK = timedelta(minutes=5)
START = date(2026, 1, 1)
DAYS = 365
OWNERS = {"ci-alice": "alice", "ci-bob": "bob", "ci-carol": "carol", "ci-dave": "dave", "ci-erin": "erin"}
TAGS = {"ci-carol": (("auto-shutdown", "never"),), "ci-erin": (("auto-shutdown", "2026-06-30"),)}
TEAM = "ml-team@contoso.com"
FINOPS = "finops@contoso.com"
SIZE, PRICE = "STANDARD_DS3_V2", 0.293  # every instance: USD per hour
CHOICES, REMINDER = ("60", "120", "night"), timedelta(minutes=15)
SUBSCRIPTION = "3b1c0d7e-0000-4000-8000-0000000000ea"
SITES = (("ws-berlin", "Europe/Berlin", "DE-BY"), ("ws-new-york", "America/New_York", "US-NY"),
         ("ws-tokyo", "Asia/Tokyo", "JP"))  # fmt: skip
WINDOW = timedelta(hours=6)  # catch-up, the longest delay and the audit after a shutdown, and more
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


class ListPrices:
    def hourly_price(self, region, size, currency):
        return PRICE if (region, size, currency) == ("westeurope", SIZE, "USD") else None


class SimWorkspace:
    """Like ARM: a stop stops whatever it is told to. Being careful is the app's job, and checked here."""

    def __init__(self):
        self.states = {name: "Running" for name in OWNERS}  # the simulation starts at noon
        self.stops: list[tuple[str, datetime]] = []
        self.violations: list[str] = []
        self.now = datetime.min.replace(tzinfo=UTC)

    def list_instances(self) -> list[Instance]:
        return [
            Instance(n, s, f"{OWNERS[n]}@contoso.com", TAGS.get(n, ()), SIZE, "westeurope")
            for n, s in self.states.items()
        ]

    def stop(self, name: str) -> StopOutcome:
        if self.states[name] == "JobRunning":
            self.violations.append(f"{self.now}: stopped {name} while it ran a job")
        if self.states[name] not in ("Running", "JobRunning"):
            return StopOutcome.NOT_RUNNING
        self.states[name] = "Stopped"
        self.stops.append((name, self.now))
        return StopOutcome.STOPPED


@dataclass
class Site:
    """One workspace of the estate and what happened there."""

    name: str
    calendar: ShutdownCalendar
    workspace: SimWorkspace
    compute: Flaky
    nights: list = field(default_factory=list)
    mails: list[tuple[str, date, datetime]] = field(default_factory=list)
    reminders: list[tuple[str, date, str, datetime]] = field(default_factory=list)
    successes: list[tuple[str, date]] = field(default_factory=list)


@dataclass
class Year:
    rng: random.Random
    failed_runs: list[tuple[str, datetime, str]] = field(default_factory=list)
    ticks_with_calls_outside_windows: int = 0
    reports: list = field(default_factory=list)  # the morning-after reports, as mailed

    def __post_init__(self):
        entries = [{"subscription_id": SUBSCRIPTION, "resource_group": "rg-ml", "workspace": name,
                    "time_zone": zone, "holidays": holidays} for name, zone, holidays in SITES]  # fmt: skip
        self.settings = Settings.from_environ(
            environ(
                **SINGLE_WORKSPACE_OFF, aml_workspaces=json.dumps(entries), shutdown_days="Mon-Fri",
                skip_dates="2026-08-10..2026-08-14", warning_minutes="60", catch_up_minutes="120",
                notify_instance_owner="true", to_emails=TEAM, reminder_minutes="15", report_emails=FINOPS,
            )
        )  # fmt: skip
        self.ledger_fake, self.mailer_fake = FakeLedger(), FakeMailer()
        self.ledger = Flaky(self.ledger_fake, self.rng, "Table Storage")
        self.mailer = Flaky(self.mailer_fake, self.rng, "SendGrid")
        self.policy = RetryPolicy(attempts=4, sleep=lambda s: None, jitter=lambda: 0.5, clock=lambda: 0.0)
        estate = self._app(datetime.now(UTC)).estate
        self.sites = {}
        for name, _, _ in SITES:
            workspace = SimWorkspace()
            calendar = estate.find(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/"
                                   f"Microsoft.MachineLearningServices/workspaces/{name}").calendar  # fmt: skip
            self.sites[name] = Site(name, calendar, workspace, Flaky(workspace, self.rng, "AzureML"))

    def _app(self, now: datetime):
        """The app at `now`: one for the year, as in a worker that lives long (its caches are pure)."""
        self.now = now
        if not hasattr(self, "the_app"):
            self.the_app = app.bootstrap(
                self.settings, workspaces=lambda sub, rg, name: self.sites[name].compute, directory=None,
                ledger=self.ledger, mailer=self.mailer, clock=lambda: self.now, sleep=lambda s: None,
                monotonic=lambda: 0.0, prices=ListPrices(),
            )  # fmt: skip
        return self.the_app

    @property
    def calls(self) -> int:
        return self.ledger.calls + self.mailer.calls + sum(site.compute.calls for site in self.sites.values())

    def run(self) -> None:
        # From 07:00 UTC the day before START, when no zone has a window open, for DAYS + 2 days.
        begin = datetime.combine(START, datetime.min.time(), tzinfo=UTC) - timedelta(hours=17)
        end = begin + timedelta(days=DAYS + 2)
        for site in self.sites.values():  # the nights whose every window lies inside the simulated time
            nights = (site.calendar.night(START + timedelta(days=d)) for d in range(-1, DAYS + 1))
            site.nights = [
                n for n in nights if n and begin + timedelta(hours=1) <= n.shutdown_at <= end - WINDOW
            ]
        berlin = self.sites["ws-berlin"].nights
        outage_night = berlin[len(berlin) // 2]
        self.outage = (
            outage_night.shutdown_at - timedelta(minutes=10),
            outage_night.shutdown_at + timedelta(minutes=20),
        )
        clicks = defaultdict(list)
        for site in self.sites.values():
            self._plan_clicks(site, clicks)
        now = begin
        while now < end:
            for site in self.sites.values():
                self._world(site, now)
            for at, site, instance, night, delay in sorted(clicks.pop(now, ()), key=lambda click: click[0]):
                self._click(at, site, instance, night, delay)
            if not self.outage[0] <= now <= self.outage[1]:
                self._tick(now)
            now += TICK

    # --------------------------------------------------------------------------------------- the app
    def _tick(self, now: datetime) -> None:
        for site in self.sites.values():
            site.workspace.now = now
        before = self.calls
        for name, run in (("MailSender", self._mail), ("ComputeShutdown", self._sweep)):
            try:
                run(now)
            except AutoShutdownError as error:
                self.failed_runs.append((name, now, str(error)))
        if self.calls != before:
            calendars = [site.calendar for site in self.sites.values()]
            due = any(c.mail_due(now) or c.sweep_due(now) or c.audit_due(now) for c in calendars)
            due = due or report_day(now, calendars) is not None  # the morning-after report's window
            self.ticks_with_calls_outside_windows += not due

    def _mail(self, now: datetime) -> None:
        sent = len(self.mailer_fake.sent)
        try:
            self._app(now).mail_sender()
        finally:  # a run that fails for one recipient has still mailed the others
            for mail in self.mailer_fake.sent[sent:]:
                (site,) = [
                    s for s in self.sites.values() if any(s.name in link for link in _workspaces(mail))
                ]
                if night := site.calendar.mail_due(now):
                    site.mails.append((mail.to, night.day, now))
                else:
                    night = site.calendar.reminder_due(now, REMINDER)
                    site.reminders.append((mail.instances[0], night.day, mail.subject, now))

    def _sweep(self, now: datetime) -> None:
        sent = len(self.mailer_fake.sent)
        try:
            self._app(now).compute_shutdown()
        finally:
            self.reports += [m for m in self.mailer_fake.sent[sent:] if m.to == FINOPS]

    def _click(self, at: datetime, site: Site, instance: str, night, delay: str) -> None:
        owner = f"{OWNERS[instance]}@contoso.com"  # the link from the owner's own mail
        token = self._app(at).signer.sign(
            CancelGrant(night.target.arm_id, instance, night.day, night.shutdown_at, owner)
        )
        for method in ("GET", "POST"):
            request = CancelRequest(method, token, ClientInfo("203.0.113.9", "sim"), delay)
            try:
                result = self._app(at).cancel_shutdown(request)
            except AutoShutdownError:
                return  # an error page: nothing promised
            if result.outcome in (Outcome.KEPT, Outcome.ALREADY_KEPT):
                site.successes.append((instance, night.day, result.in_force.until, at))

    # ---------------------------------------------------------------------------------- the people
    def _plan_clicks(self, site: Site, clicks) -> None:
        for night in site.nights:
            for instance in self.rng.sample(sorted(OWNERS), 2):
                at = night.shutdown_at + timedelta(
                    minutes=self.rng.randint(-70, 30), seconds=self.rng.randint(0, 59)
                )
                clicks[_tick_before(at)].append((at, site, instance, night, self.rng.choice(CHOICES)))
                if self.rng.random() < 0.4:  # a change of mind, before or after the shutdown
                    later = at + timedelta(minutes=self.rng.randint(5, 100))
                    clicks[_tick_before(later)].append(
                        (later, site, instance, night, self.rng.choice(CHOICES))
                    )

    def _world(self, site: Site, now: datetime) -> None:
        local = now.astimezone(site.calendar.rules.zone)
        states = site.workspace.states
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


def _workspaces(mail) -> list[str]:
    """The workspace ARM ids the links of a mail name."""
    signer = app.LinkSigner(TEST_SECRET)
    tokens = re.findall(r"token=([^\s&\"]+)", mail.text)
    return [signer.verify(unquote(token)).workspace for token in tokens]


def _tick_before(at: datetime) -> datetime:
    return at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)


@pytest.mark.timeout(600)  # about a minute alone; on a busy 2-core machine, several
def test_a_simulated_year_of_three_workspaces_in_three_zones(capsys):
    year = Year(random.Random("year-of-three"))
    year.run()
    missed_total = 0
    for site in year.sites.values():
        missed_total += _check(year, site, capsys)
    assert len([f for f in year.failed_runs for _ in re.finditer(r"missed: ", f[2])]) == missed_total
    assert year.ticks_with_calls_outside_windows == 0
    # The same instance names in three workspaces: never one keep or record for two of them.
    assert len({key.rsplit("|", 1)[0] for key, _ in year.ledger_fake.nights if key.startswith("3b1c")}) == 3
    _check_monthly_totals(year, capsys)


def _check_monthly_totals(year: Year, capsys) -> None:
    """One report per report day; each month's total (the last report's month so far, and the next
    month's first report's previous month) equals the sum of its nights, and of the ledger's rows."""
    figures = [_figures(report) for report in year.reports]
    days = [day for day, *_ in figures]
    assert len(days) == len(set(days)) and len(days) >= 250  # once per night, whatever the retries
    months: dict[tuple[int, int], list] = defaultdict(list)
    for day, tonight, so_far, previous in figures:
        months[(day.year, day.month)].append((day, tonight, so_far, previous))
    totals = {}
    for month, reports in sorted(months.items()):
        nights = round(sum(tonight for _, tonight, _, _ in reports), 2)
        assert reports[-1][2] == pytest.approx(nights, abs=0.011), month
        rows = [
            r
            for (key, _), r in year.ledger_fake.rows.items()
            if key.rsplit("|", 1)[1].startswith(f"{month[0]}-{month[1]:02d}")
        ]
        assert nights == pytest.approx(sum(r.saving or 0 for r in rows), abs=0.011), month
        totals[month] = nights
    for month, reports in sorted(months.items())[1:]:
        before = (month[0], month[1] - 1) if month[1] > 1 else (month[0] - 1, 12)
        assert reports[0][3] == pytest.approx(totals[before], abs=0.011), month
    assert len([m for m in totals if m[0] == 2026]) == 12
    with capsys.disabled():
        print(
            "\n  monthly savings (USD): "
            + ", ".join(f"{y}-{m:02d} {v:.2f}" for (y, m), v in sorted(totals.items()))
        )


def _figures(report) -> tuple[date, float, float, float]:
    day = datetime.strptime(report.subject.split("night of ")[1], "%A %d %B %Y").date()
    text = report.text
    tonight = float(re.search(r"Estimated saving tonight: ([\d.]+) USD", text).group(1))
    so_far = float(re.search(rf"\n{day:%B} so far: ([\d.]+) USD", text).group(1))
    previous = float(re.search(r"\n[A-Z][a-z]+: ([\d.]+) USD\n", text).group(1))
    return day, tonight, so_far, previous


def _check(year: Year, site: Site, capsys) -> int:
    calendar, workspace, ledger = site.calendar, site.workspace, year.ledger_fake
    nights = {night.day: night for night in site.nights}
    assert 230 <= len(nights) <= 255  # weekdays less holidays and the skip week

    # Mail: exactly one per recipient per shutdown night, inside its window; none on other days.
    per_night = Counter((to, day) for to, day, _ in site.mails)
    assert all(count == 1 for count in per_night.values()), [k for k, c in per_night.items() if c > 1]
    assert {day for _, day, _ in site.mails} == set(nights)
    for _to, day, at in site.mails:
        assert nights[day].shutdown_at - timedelta(minutes=60) <= at < nights[day].shutdown_at
    for day in nights:
        assert (TEAM, day) in per_night
        assert ("carol@contoso.com", day) not in per_night  # opted out with `never`

    # The keeps at the end of each night: the latest stop time wins, so that is the latest one asked.
    def day_of(key: str) -> date:
        return date.fromisoformat(key.rsplit("|", 1)[1])

    mine = calendar.target.key
    final = {
        (keep.instance, day_of(key)): keep for (key, _), keep in ledger.keeps.items() if key.startswith(mine)
    }
    sweeps = {
        day_of(key): record
        for (key, kind), record in ledger.nights.items()
        if kind == "sweep" and key.startswith(mine)
    }
    honoured = {(name, day): final[(name, day)] for day, r in sweeps.items() for name in r.kept or ()}

    # Stops: never before the time in force, at the first live tick at or after it (unless a run of that
    # night failed first), never of an instance kept all night, never twice a night.
    stops_per_night = Counter()
    failed_sweeps = [
        at for name, at, why in year.failed_runs if name == "ComputeShutdown" and site.name in why
    ]
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
    for instance, day, until, _at in site.successes:
        keep = final[(instance, day)]
        assert (instance, day) in honoured, f"success page for {instance} on {day}, not honoured"
        assert keep.later(until) == keep.until, f"{instance} on {day}: a success page's time was shortened"

    # Reminders: one per stop time, to the owner, before it; the time in force always has one unless it
    # was set less than a tick before it.
    reminded = Counter((instance, day, subject) for instance, day, subject, _ in site.reminders)
    assert all(count == 1 for count in reminded.values()), [k for k, c in reminded.items() if c > 1]
    last_click = {(i, d): at for i, d, _, at in site.successes}
    zone = calendar.rules.zone
    for (name, day), keep in honoured.items():
        clicked = last_click.get((name, day))  # none: the click's page was an error, yet its keep stood
        if keep.until is not None and clicked and keep.until - clicked > REMINDER + TICK:
            assert (name, day, f"{name} stops at {keep.until.astimezone(zone):%H:%M}") in reminded, (
                name,
                day,
            )

    # Failures surface: every sweep ends done or missed, every missed night failed a run.
    assert all(record.state in ("done", "missed") for record in sweeps.values())
    missed = [record for record in sweeps.values() if record.state == "missed"]

    kept = len(honoured)
    delayed = sum(1 for keep in honoured.values() if keep.until is not None)
    with capsys.disabled():
        print(
            f"\n  simulated year {site.name} ({calendar.rules.zone}): {len(nights)} nights, {len(site.mails)} mails, {len(workspace.stops)} stops, "
            f"{kept} keeps honoured ({delayed} delayed), {len(site.reminders)} reminders, "
            f"{len(site.successes)} success pages, {len(missed)} missed, "
            f"{sum(site.name in why for _, _, why in year.failed_runs)} failed runs"
        )
    return len(missed)
