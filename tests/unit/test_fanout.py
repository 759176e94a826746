import threading
import time

import pytest

from shared.errors import OutOfTimeError
from shared.fanout import call_with_budget, run_bounded


def test_results_and_errors_are_returned_per_item():
    def work(n):
        if n == 2:
            raise ValueError("two")
        return n * 10

    outcomes = run_bounded([1, 2, 3], work, max_parallel=4, budget=5)
    assert outcomes[1] == 10 and outcomes[3] == 30
    assert isinstance(outcomes[2], ValueError)


def test_never_more_than_max_parallel_at_once():
    lock, running, peak = threading.Lock(), [0], [0]

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    run_bounded(list(range(30)), work, max_parallel=3, budget=10)
    assert peak[0] == 3


def test_items_without_an_answer_within_the_budget_are_out_of_time():
    release = threading.Event()

    def work(n):
        if n == 0:
            release.wait(5)
        return n

    started = time.perf_counter()
    outcomes = run_bounded([0, 1, 2], work, max_parallel=3, budget=0.3)
    release.set()
    assert time.perf_counter() - started < 2
    assert isinstance(outcomes[0], OutOfTimeError)
    assert outcomes[1] == 1 and outcomes[2] == 2


def test_nothing_to_do_returns_at_once():
    assert run_bounded([], lambda n: n, max_parallel=2, budget=1) == {}


def test_call_with_budget():
    assert call_with_budget(lambda: 42, 1) == 42
    with pytest.raises(OutOfTimeError):
        call_with_budget(lambda: time.sleep(1), 0.1)
    with pytest.raises(KeyError):
        call_with_budget(lambda: {}["missing"], 1)
