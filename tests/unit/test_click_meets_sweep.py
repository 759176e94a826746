"""A click and the night's sweep, interleaved at every step of their ledger calls.

Each interleaving runs the real use cases in two threads over one FakeLedger; a turnstile lets them
take their ledger calls only in the order of the schedule. Whatever the order: a success page means the
instance keeps running tonight, and a "the shutdown began" page means it is stopped.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from shared.cancellation import CancelRequest, Outcome, keep_instance_tonight
from shared.domain import ClientInfo, Instance
from shared.errors import ExpiredLinkError
from shared.links import CancelGrant, LinkSigner
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.sweep import SweepOptions, stop_unclaimed_instances
from tests.fakes import TEST_SECRET, FakeLedger, FakeWorkspace, environ

SHUTDOWN = datetime(2026, 11, 24, 19, tzinfo=UTC)
SWEEP_STEPS = 6  # read the record, claim, read the keeps, store the ones it honours, read who was told,
# save the progress
CLICK_STEPS = (
    4  # read the keep in force, store the keep, read the sweep record (twice if the sweep is mid-read)
)
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda s: None)


class Turnstile:
    """Ledger calls go one at a time, in the order of `schedule` (an actor that has finished is skipped;
    once the schedule is used up, calls go in any order)."""

    def __init__(self, schedule):
        self.schedule, self.finished = list(schedule), set()
        self._turn = threading.Condition()

    @contextmanager
    def turn(self, actor: str):
        with self._turn:
            while True:
                while self.schedule and self.schedule[0] in self.finished:
                    self.schedule.pop(0)
                if not self.schedule or self.schedule[0] == actor:
                    break
                assert self._turn.wait(timeout=10), f"{actor} waited forever for {self.schedule}"
            if self.schedule:
                self.schedule.pop(0)
            yield  # the call runs while holding the turn: one ledger call at a time
            self._turn.notify_all()

    def finish(self, actor: str) -> None:
        with self._turn:
            self.finished.add(actor)
            self._turn.notify_all()


class TurnTakingLedger:
    def __init__(self, ledger: FakeLedger, turnstile: Turnstile, actor: str):
        self._ledger, self._turnstile, self._actor = ledger, turnstile, actor

    def __getattr__(self, name):
        method = getattr(self._ledger, name)

        def call(*args, **kwargs):
            with self._turnstile.turn(self._actor):
                return method(*args, **kwargs)

        return call


def schedules():
    steps = SWEEP_STEPS + CLICK_STEPS
    for clicks in itertools.combinations(range(steps), CLICK_STEPS):
        yield "".join("c" if n in clicks else "s" for n in range(steps))


@pytest.mark.parametrize("schedule", list(schedules()))
def test_a_click_and_the_sweep_in_any_order(schedule):
    settings = Settings.from_environ(environ())
    calendar = ShutdownCalendar(settings.target(), settings.calendar_rules())
    night = calendar.next_night(SHUTDOWN - timedelta(hours=1))
    token = LinkSigner(TEST_SECRET).sign(
        CancelGrant(night.target.arm_id, "ci-alice", night.day, night.shutdown_at)
    )
    ledger, workspace = (
        FakeLedger(),
        FakeWorkspace(Instance("ci-alice", "Running"), Instance("ci-bob", "Running")),
    )
    ledger.told(night, "ci-alice", "ci-bob")  # the warning mail went out an hour before
    turnstile = Turnstile(["click" if step == "c" else "sweep" for step in schedule])
    page: list[object] = []

    def click():
        try:
            request = CancelRequest("POST", token, ClientInfo())
            # A host whose clock is a little behind: the click still counts as before the shutdown.
            page.append(keep_instance_tonight(
                request, SHUTDOWN - timedelta(seconds=1), calendar, LinkSigner(TEST_SECRET),
                TurnTakingLedger(ledger, turnstile, "click"), policy=NO_WAIT, sleep=lambda s: None,
            ).outcome)  # fmt: skip
        except ExpiredLinkError as error:
            page.append(error)
        finally:
            turnstile.finish("click")

    def sweep():
        try:
            stop_unclaimed_instances(
                SHUTDOWN + timedelta(seconds=1), calendar, workspace, TurnTakingLedger(ledger, turnstile, "sweep"),
                SweepOptions(), NO_WAIT,
            )  # fmt: skip
        finally:
            turnstile.finish("sweep")

    threads = [threading.Thread(target=click), threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    (answer,) = page
    stopped = "ci-alice" in workspace.stopped
    if answer is Outcome.KEPT:
        assert not stopped, f"{schedule}: a success page, then the instance was stopped"
    else:
        assert isinstance(answer, ExpiredLinkError) and "began just before" in str(answer)
        assert stopped, f"{schedule}: told the shutdown began, yet the instance was kept"
    assert "ci-bob" in workspace.stopped
