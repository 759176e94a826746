from datetime import UTC, datetime

import pytest

from shared.errors import CredentialsError, ServiceError, TransientServiceError
from shared.retry import Backpressure, RetryPolicy, retry_after_seconds


class Flaky:
    """Fails with the given errors, then returns "done"."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class FakeTime:
    """A clock that moves only when somebody sleeps."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds

    def clock(self) -> float:
        return self.now


def policy(time: FakeTime | None = None, **kwargs) -> tuple[RetryPolicy, list[float]]:
    time = time or FakeTime()
    defaults = dict(
        attempts=4, base_delay=1.0, max_delay=30.0, sleep=time.sleep, clock=time.clock, jitter=lambda: 0.5
    )
    return RetryPolicy(**{**defaults, **kwargs}), time.slept


def transient(retry_after=None):
    return TransientServiceError("AzureML", "HTTP 503", retry_after)


def test_transient_failures_are_retried_with_exponential_backoff():
    retry, slept = policy()
    operation = Flaky(transient(), transient(), transient())
    assert retry.call(operation, "x") == "done"
    assert operation.calls == 4
    assert slept == [1.0, 2.0, 4.0]


def test_attempts_are_bounded_and_the_last_error_is_raised():
    retry, slept = policy(attempts=3)
    operation = Flaky(*(transient() for _ in range(5)))
    with pytest.raises(TransientServiceError):
        retry.call(operation, "x")
    assert operation.calls == 3 and len(slept) == 2


def test_retry_after_is_honoured_exactly_plus_a_little_jitter():
    retry, slept = policy(base_delay=0.2)
    assert retry.call(Flaky(transient(retry_after=7)), "x") == "done"
    assert slept == [7.1]


def test_a_retry_after_beyond_the_cap_gives_up_at_once():
    retry, slept = policy(max_delay=10)
    operation = Flaky(transient(retry_after=60))
    with pytest.raises(TransientServiceError):
        retry.call(operation, "x")
    assert operation.calls == 1 and slept == []


def test_backoff_never_exceeds_the_cap():
    retry, _ = policy(base_delay=10, max_delay=15, jitter=lambda: 1.0)
    assert [retry.delay(n, None) for n in (1, 2, 3)] == [15, 15, 15]


def test_jitter_spreads_waits_between_half_and_one_and_a_half_times_the_backoff():
    low, _ = policy(jitter=lambda: 0.0)
    high, _ = policy(jitter=lambda: 0.999)
    assert low.delay(2, None) == 1.0 and 2.9 < high.delay(2, None) < 3.0


@pytest.mark.parametrize(
    "error", [ServiceError("SendGrid", "400"), CredentialsError("AzureML", "401", ("x",)), KeyError()]
)
def test_permanent_errors_and_bugs_are_not_retried(error):
    retry, slept = policy()
    operation = Flaky(error)
    with pytest.raises(type(error)):
        retry.call(operation, "x")
    assert operation.calls == 1 and slept == []


def test_a_throttle_seen_by_one_call_holds_back_the_others_of_the_run():
    time = FakeTime()
    retry, slept = policy(time, base_delay=0.2)
    pressure = Backpressure()
    assert retry.call(Flaky(transient(retry_after=5)), "first", pressure) == "done"  # told: waits 5.1
    assert slept == [5.1]
    pressure.hold_until(time.now + 3)  # another call of the run is throttled meanwhile
    second = Flaky()
    assert retry.call(second, "second", pressure) == "done"
    assert slept == [5.1, 3.1] and second.calls == 1  # waited its turn before even trying


def test_plain_failures_do_not_hold_back_the_others():
    time = FakeTime()
    retry, slept = policy(time)
    pressure = Backpressure()
    retry.call(Flaky(transient()), "first", pressure)
    assert pressure.until == 0.0 and slept == [1.0]


def test_retry_after_zero_still_waits_the_backoff_instead_of_bursting():
    retry, slept = policy(jitter=lambda: 0.5)
    operation = Flaky(transient(retry_after=0), transient(retry_after=0), transient(retry_after=0))
    assert retry.call(operation, "x") == "done"
    # backoff 1, 2, 4 s (jitter 0.5 -> x1.0), each plus the spread of a throttled wait (0.5 s)
    assert slept == [1.5, 2.5, 4.5]


def test_a_retry_after_beyond_the_cap_holds_back_every_other_call_of_the_run():
    time = FakeTime()
    retry, slept = policy(time, max_delay=10)
    pressure = Backpressure()
    with pytest.raises(TransientServiceError):
        retry.call(Flaky(transient(retry_after=600)), "first", pressure)
    others = [Flaky() for _ in range(3)]
    for n, other in enumerate(others):
        with pytest.raises(TransientServiceError, match="asked this run to wait 600 s") as caught:
            retry.call(other, f"call {n}", pressure)
        assert caught.value.service == "AzureML"
    assert [other.calls for other in others] == [0, 0, 0] and slept == []  # nobody hit the 429 again


def test_a_short_hold_left_by_a_long_one_lets_calls_through_once_it_fits():
    time = FakeTime()
    retry, slept = policy(time, max_delay=10, base_delay=0.2)
    pressure = Backpressure()
    pressure.hold_until(time.now + 25, transient(retry_after=25))
    time.now += 20  # five seconds left: within the cap, so the next call waits and goes
    second = Flaky()
    assert retry.call(second, "second", pressure) == "done"
    assert second.calls == 1 and slept == [5.1]


NOW = datetime(2026, 11, 25, 19, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 25 Nov 2026 19:00:05 GMT", 5.0),  # RFC 9110 IMF-fixdate
        ("Wednesday, 25-Nov-26 19:01:00 GMT", 60.0),  # obsolete RFC 850 form, still to be accepted
        ("Wed Nov 25 19:00:30 2026", 30.0),  # asctime form
        ("Wed, 25 Nov 2026 18:00:00 GMT", 0.0),  # in the past: no wait beyond the backoff
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header, seconds):
    assert retry_after_seconds(header, NOW) == seconds
