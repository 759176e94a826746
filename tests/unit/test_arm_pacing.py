"""WriteBucket: ARM's write bucket (200, +10/s) mirrored on our side, on a fake clock."""

import threading

import pytest

from shared.arm_pacing import WriteBucket


class FakeTime:
    """A clock that only moves when somebody sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)


def bucket(time: FakeTime, capacity=200, rate=10.0) -> WriteBucket:
    return WriteBucket(capacity, rate, clock=time.clock, sleep=time.sleep)


def test_a_full_bucket_lets_its_capacity_through_at_once():
    t = FakeTime()
    b = bucket(t)
    assert all(b.take() for _ in range(200))
    assert t.sleeps == []
    assert b.available == 0


def test_past_the_capacity_each_write_waits_for_its_own_token_in_order():
    t = FakeTime()
    b = bucket(t)
    for _ in range(200):
        b.take()
    for _ in range(3):
        assert b.take() is True
    # Reserved in order: the 201st waits 0.1 s, the 202nd 0.2 s, the 203rd 0.3 s (nobody slept yet).
    assert t.sleeps == pytest.approx([0.1, 0.2, 0.3])
    t.now += 0.3  # their tokens have come
    assert b.available == pytest.approx(0)


def test_refill_is_ten_per_second_and_never_beyond_capacity():
    t = FakeTime()
    b = bucket(t)
    for _ in range(200):
        b.take()
    t.now += 2.5
    assert b.available == pytest.approx(25)
    t.now += 3600
    assert b.available == 200


def test_1000_writes_take_80_seconds_past_the_first_200():
    t = FakeTime()
    b = bucket(t)
    for _ in range(1000):
        b.take()
    assert max(t.sleeps) == pytest.approx(80.0)  # (1000 - 200) / 10 per second
    assert len(t.sleeps) == 800


def test_max_wait_refuses_a_token_that_comes_too_late_and_uses_none():
    t = FakeTime()
    b = bucket(t, capacity=2, rate=10.0)
    assert b.take(max_wait=0) and b.take(max_wait=0)
    assert b.take(max_wait=0.05) is False  # its token would come in 0.1 s
    assert t.sleeps == []
    assert b.available == pytest.approx(0)  # nothing was used by the refusal
    assert b.take(max_wait=0.1) is True
    assert t.sleeps == pytest.approx([0.1])


def test_arm_reporting_fewer_remaining_writes_lowers_the_bucket_never_raises_it():
    t = FakeTime()
    b = bucket(t)
    b.observe_remaining(5)  # another run of the same principal used most of ARM's bucket
    assert b.available == 5
    b.observe_remaining(150)
    assert b.available == 5
    for _ in range(5):
        b.take()
    b.take()
    assert t.sleeps == pytest.approx([0.1])


def test_threads_share_one_bucket_and_no_token_is_given_twice():
    t = FakeTime()
    b = bucket(t, capacity=50, rate=10.0)
    threads = [threading.Thread(target=lambda: [b.take() for _ in range(10)]) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    waits = sorted(t.sleeps)
    assert len(waits) == 160 - 50
    # Every reserved token is a distinct future instant, 0.1 s apart: nobody got the same one.
    assert waits == pytest.approx([0.1 * i for i in range(1, 111)])


@pytest.mark.parametrize(("capacity", "rate"), [(0, 10.0), (10, 0.0)])
def test_nonsense_parameters_are_refused(capacity, rate):
    with pytest.raises(ValueError):
        WriteBucket(capacity, rate)
