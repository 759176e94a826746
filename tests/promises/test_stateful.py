"""The README's promises as invariants, and Hypothesis looking for a sequence of events that breaks one.

The real use cases run through `bootstrap()` over the fakes, with a clock the machine moves: ticks of
both timers (or a host that misses them), clicks on any link of any earlier mail with any choice at any
moment (before and after its night, repeated, GET and POST), owners starting and stopping instances,
jobs starting and ending, opt-out tags changing, stops that fail once or for good, days and DST changes.

Checked after every step:
- never a stop of an instance while a page shown for that night said it is kept (or delayed past it);
- never a stop without a notice about that instance at least `minimum_notice_minutes` earlier;
- never a stop of an opted-out instance, at most one stop per instance per night;
- a stop that failed is tried again on the next tick inside the night's catch-up window;
- one mail per recipient and night (and late notices): never twice about the same instance;
- GET and HEAD never write;
- the report's rows: each stop's saving is its hours x the price, its hours those until the first
  `workday_start` after the night's shutdown on a shutdown day.
`make test` runs a bounded, derandomized search (a few seconds); `make soak` runs a long one.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from shared.cancellation import Outcome
from shared.domain import Instance, StopOutcome
from shared.errors import AutoShutdownError, RunFailedError, ServiceError
from shared.outcomes import STOPPED
from shared.shutdown_calendar import local_instant
from tests.promises.world import PRICE, World

SOAK = os.environ.get("PROMISES_SOAK") == "1"
NAMES = ("ci-ann", "ci-ben", "ci-cat")  # ci-cat starts stopped: its owner may start it at any moment
TEAM = "ml-team@contoso.com"
MINIMUM_NOTICE = timedelta(minutes=30)  # minimum_notice_minutes' default, which every deployment here keeps
TAG = "auto-shutdown"
STARTS = (  # Sundays at noon, Berlin: ordinary weeks, both DST changes, a holiday week
    datetime(2026, 11, 22, 11, tzinfo=UTC),
    datetime(2026, 3, 29, 10, tzinfo=UTC) - timedelta(days=1),
    datetime(2026, 10, 25, 10, tzinfo=UTC) - timedelta(days=1),
    datetime(2026, 12, 20, 11, tzinfo=UTC),
)
CALENDARS = (
    {"shutdown_time": "20:00", "warning_minutes": "60"},
    {"shutdown_time": "02:30", "warning_minutes": "60"},  # after midnight: the night of the next date
    {"shutdown_time": "23:50", "warning_minutes": "45", "shutdown_days": "Mon-Fri", "holidays": "DE"},
)


# Minutes from tonight's shutdown: before and after the warning, around the shutdown, the delayed stops
# and the ends of their windows.
BEFORE = [-30, -5, -45, -70, -1]  # the warning window: most of what people do happens here
MINUTE = st.sampled_from([*BEFORE, *BEFORE, 1, 3, 7, 30, 59, 61, 65, 119, 121, 125, 180, 239, 241, 300])
CLICK = st.tuples(
    st.just("click"), MINUTE, st.integers(0, 99), st.sampled_from(["POST", "GET", "HEAD"]),
    st.sampled_from([None, "60", "120", "night", "15"]), st.booleans(),
)  # fmt: skip
EVENT = st.one_of(
    CLICK,
    CLICK,
    st.tuples(st.just("refuse"), MINUTE, st.sampled_from(NAMES), st.integers(1, 3)),
    st.tuples(st.just("state"), MINUTE, st.sampled_from(NAMES), st.sampled_from(["Running", "Stopped", "JobRunning"])),
    st.tuples(st.just("tag"), MINUTE, st.sampled_from(NAMES), st.sampled_from(["off", "", "not-a-date"])),
    st.tuples(st.just("mail_fails"), MINUTE, st.sampled_from([TEAM, "ann@contoso.com"])),
)  # fmt: skip
HOST_DOWN = st.none() | st.tuples(st.integers(-75, 300), st.integers(5, 240))  # (from, for how long)


@dataclass(frozen=True)
class Promise:
    """A page said `instance` is kept on the night of `day` until `until` (None: all night)."""

    instance: str
    day: date
    until: datetime | None
    shown_at: datetime
    link_day: date  # the night the link was for


class RecordingCompute:
    """The fake workspace, with each stop that happened remembered with its moment."""

    def __init__(self, world: World):
        self.world, self.fake = world, world.compute
        self.stops: list[tuple[str, datetime]] = []
        self.attempts: list[tuple[str, datetime]] = []
        self.refused: list[str] = []  # stopped while opted out by its tag
        real = self.fake.stop

        def stop(name: str) -> StopOutcome:
            instance = self.fake.instances[name]
            self.attempts.append((name, world.now))
            outcome = real(name)
            if outcome is StopOutcome.STOPPED:
                self.stops.append((name, world.now))
                if (instance.tag(TAG) or "").lower() == "off":
                    self.refused.append(name)
            return outcome

        self.fake.stop = stop


class Promises(RuleBasedStateMachine):
    @initialize(start=st.sampled_from(STARTS), calendar=st.sampled_from(CALENDARS))
    def deploy(self, start, calendar):
        instances = [
            Instance(name, "Stopped" if name == "ci-cat" else "Running", f"{name[3:]}@contoso.com",
                     size="Standard_DS3_v2", region="westeurope")
            for name in NAMES
        ]  # fmt: skip
        self.world = World(
            *instances, now=start, time_zone="Europe/Berlin", report_emails="finops@contoso.com",
            notify_instance_owner="true", **calendar,
        )  # fmt: skip
        self.compute = RecordingCompute(self.world)
        self.calendar = self.world.app.estate.single().calendar
        self.promises: list[Promise] = []
        self.failed_stops: dict[str, date] = {}  # instance -> the night whose stop of it failed
        self.owed: list[tuple[str, datetime]] = []  # retries a tick should have tried and did not

    # ---------------------------------------------------------------------------------- evenings
    @rule(events=st.lists(EVENT, min_size=2, max_size=12), host_down=HOST_DOWN)
    def evening(self, events, host_down):
        """The next night, from before its warning until its last window has closed: a tick of both
        timers every five minutes (none while the host is down), and the events at their moments."""
        night = self.calendar.next_night(self.world.now + timedelta(hours=1))
        rules = self.calendar.rules
        at = self._grid(night.shutdown_at - rules.warning - timedelta(minutes=10))
        end = night.shutdown_at + rules.catch_up + rules.longest_delay + timedelta(minutes=65)
        todo = sorted(events, key=lambda e: e[1])
        down = (
            (night.shutdown_at + timedelta(minutes=host_down[0]), timedelta(minutes=host_down[1]))
            if host_down else None
        )  # fmt: skip
        while at <= end:
            while todo and night.shutdown_at + timedelta(minutes=todo[0][1]) < at:
                kind, minute, *args = todo.pop(0)
                self.world.at(max(self.world.now, night.shutdown_at + timedelta(minutes=minute)))
                getattr(self, f"_{kind}")(*args)
                self.check()
            if not (down and down[0] <= at < down[0] + down[1]):
                self.world.at(at)
                self._tick()
                self.check()
            at += timedelta(minutes=5)
        self.world.at(end)

    @rule(days=st.integers(1, 3))
    def quiet_days(self, days):
        """Days on which the host is down, or nothing happens worth a tick."""
        self.world.at(self.world.now + timedelta(days=days))

    def _tick(self):
        now = self.world.now
        before = len(self.compute.attempts)
        for run in (self.world.mail, self.world.sweep):
            try:
                run()
            except (RunFailedError, ServiceError):
                pass  # a failed run: monitoring sees it; the invariants say whether it was right
        tried = {name for name, _ in self.compute.attempts[before:]}
        night = self.calendar.sweep_due(now)
        for name, day in list(self.failed_stops.items()):
            main_open = night is not None and night.day == day and self.calendar.main_sweep_open(night, now)
            if main_open and name not in tried and self._still_stoppable(name, night):
                self.owed.append((name, now))
            if not main_open or name in tried:
                del self.failed_stops[name]
        for name, at in self.compute.attempts[before:]:
            if (name, at) not in self.compute.stops and self.world.compute.instances[name].state == "Running":
                self.failed_stops[name] = night.day

    def _still_stoppable(self, name, night) -> bool:
        instance = self.world.compute.instances[name]
        kept = any(p.instance == name and p.day == night.day for p in self.promises)
        return instance.is_running and not kept and (instance.tag(TAG) or "") != "off"

    @staticmethod
    def _grid(instant: datetime) -> datetime:
        return instant.replace(minute=instant.minute - instant.minute % 5, second=1, microsecond=0)

    # -------------------------------------------------------------------------------- the events
    def _click(self, pick, method, delay, earlier):
        """A link of tonight's mail, or of any earlier mail, opened now."""
        tonight = self._tonight(self.world.now).day
        links = [k for k in self.world.links if (k.grant.day < tonight) == earlier] or self.world.links
        if links:
            self.click_link(links[pick % len(links)], method, delay)
            if method == "GET" and delay is not None:  # the page, then its button
                self.click_link(links[pick % len(links)], "POST", delay)

    def click_link(self, link, method, delay):
        ledger = self.world.ledger
        before = (ledger.record_calls, dict(ledger.keeps), dict(ledger.records))
        try:
            result = self.world.click(link, method, delay)
        except AutoShutdownError:
            result = None  # an error page promises nothing
        if method in ("GET", "HEAD"):
            assert (ledger.record_calls, dict(ledger.keeps), dict(ledger.records)) == before, "a GET wrote"
        if result is None:
            return
        if result.outcome in (Outcome.KEPT, Outcome.ALREADY_KEPT) or result.in_force is not None:
            # The person reads "kept tonight": the night whose evening it is now, whatever the link says.
            until = result.in_force.until if result.in_force else None
            tonight = self._tonight(self.world.now)
            self.promises.append(
                Promise(link.grant.instance, tonight.day, until, self.world.now, link.grant.day)
            )

    def _tonight(self, at: datetime):
        for offset in (-1, 0):
            night = self.calendar.night(
                at.astimezone(self.calendar.rules.zone).date() + timedelta(days=offset)
            )
            if night and night.shutdown_at - self.calendar.rules.warning <= at < self._night_ends(night):
                return night
        return self.calendar.next_night(at)

    def _state(self, name, state):
        self.world.compute.set_state(name, state)  # its owner starts or stops it, or a job starts or ends

    def _tag(self, name, value):
        instance = self.world.compute.instances[name]
        tags = tuple((k, v) for k, v in instance.tags if k != TAG) + (((TAG, value),) if value else ())
        self.world.compute.instances[name] = replace(instance, tags=tags)

    def _refuse(self, name, times):
        self.world.compute.stop_errors[name] += [ServiceError("Azure ML", "HTTP 400 (refused)")] * times

    def _mail_fails(self, recipient):
        self.world.mailer.errors[recipient].append(ServiceError("SendGrid", "HTTP 503"))

    def check(self):
        for check in (
            self.never_a_stop_a_page_said_was_kept,
            self.never_a_stop_without_its_notice,
            self.never_an_opted_out_instance_and_once_a_night,
            self.a_failed_stop_is_retried_on_the_next_tick_of_its_window,
            self.one_warning_mail_per_recipient_and_night,
            self.each_stop_saves_its_hours_until_work_starts_times_the_price,
        ):
            check()

    # ------------------------------------------------------------------------------ invariants
    def never_a_stop_a_page_said_was_kept(self):
        for name, at in self.compute.stops:
            for p in self.promises:
                night = self.calendar.night(p.day)
                if p.instance != name or night is None or not (night.shutdown_at <= at):
                    continue
                if at < self._night_ends(night) and p.shown_at <= at and (p.until is None or at < p.until):
                    raise AssertionError(
                        f"{name} stopped at {at} though a page at {p.shown_at} said kept: {p}"
                    )

    def never_a_stop_without_its_notice(self):
        minimum = MINIMUM_NOTICE
        for name, at in self.compute.stops:
            day = self._night_of(at)
            told = [k.sent_at for k in self.world.links if k.grant.instance == name and k.grant.day == day]
            assert told and min(told) + minimum <= at, f"{name} stopped at {at}, told at {told or 'never'}"

    def never_an_opted_out_instance_and_once_a_night(self):
        assert not self.compute.refused, f"stopped despite its tag: {self.compute.refused}"
        per_night = defaultdict(int)
        for name, at in self.compute.stops:
            per_night[(name, self._night_of(at))] += 1
        assert all(count == 1 for count in per_night.values()), dict(per_night)

    def a_failed_stop_is_retried_on_the_next_tick_of_its_window(self):
        assert not self.owed, f"not retried: {self.owed}"

    def one_warning_mail_per_recipient_and_night(self):
        """One mail per recipient and night, plus a late notice about an instance started after it:
        nobody hears about the same instance twice in a night (reminders aside)."""
        told = defaultdict(set)
        for link in self.world.links:
            if "stops at" not in link.mail.subject:  # a reminder has its own subject
                told[(link.mail.to, link.grant.day, link.grant.instance)].add(id(link.mail))
        assert all(len(ids) == 1 for ids in told.values()), {k: len(v) for k, v in told.items()}

    def each_stop_saves_its_hours_until_work_starts_times_the_price(self):
        for (key, _), row in self.world.ledger.rows.items():
            if row.outcome != STOPPED:
                continue
            assert row.saving == round(row.hours * PRICE, 2), row
            day = date.fromisoformat(key.rsplit("|", 1)[1])
            assert row.hours == round(self._hours_until_work(day, row.stopped_at), 2), (day, row)

    def _hours_until_work(self, night_day: date, stopped_at: datetime) -> float:
        """Written apart from shared.savings on purpose: from the stop to the first workday_start after
        the night's shutdown on a day that has a shutdown."""
        shutdown = self.calendar.night(night_day).shutdown_at
        for offset in range(0, 400):
            day = night_day + timedelta(days=offset)
            back = local_instant(day, time(8, 0), self.calendar.rules.zone)
            if back > shutdown and self.calendar.why_no_shutdown(day) is None:
                return max(0.0, (back - stopped_at).total_seconds() / 3600)
        raise AssertionError("no working day ahead")

    def _night_ends(self, night):
        """When a night is over for the people: its last stop window closed, or the next warning began."""
        rules = self.calendar.rules
        end = night.shutdown_at + rules.catch_up + rules.longest_delay
        following = self.calendar.next_night(night.shutdown_at)
        return min(end, following.shutdown_at - rules.warning) if following else end

    def _night_of(self, at: datetime) -> date | None:
        for offset in (-1, 0, 1):
            day = at.astimezone(self.calendar.rules.zone).date() + timedelta(days=offset)
            night = self.calendar.night(day)
            if night and night.shutdown_at <= at < self._night_ends(night):
                return day
        return None


Promises.TestCase.settings = settings(
    max_examples=1000 if SOAK else 30,
    stateful_step_count=8 if SOAK else 4,
    derandomize=not SOAK,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPromises = Promises.TestCase
