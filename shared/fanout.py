"""Bounded parallel work with a time budget.

Stops and mails are independent, slow remote calls: running them in a small thread pool keeps a run
short without flooding Azure (the pool size is the `max_parallel` setting). One item failing never
affects the others. The budget keeps a run inside the Functions time limit even when a call hangs:
azureml-core sets no socket timeout, and a thread cannot be interrupted, so we stop waiting for it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from .errors import OutOfTimeError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def run_bounded(
    items: Sequence[K], work: Callable[[K], T], max_parallel: int, budget: float
) -> dict[K, T | Exception]:
    """`work(item)` for every item, at most `max_parallel` at a time; results or exceptions, by item."""
    if not items:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(max_parallel, len(items)), thread_name_prefix="fanout")
    try:
        futures = {pool.submit(work, item): item for item in items}
        wait(futures, timeout=budget)
        return {item: _outcome(future, budget) for future, item in futures.items()}
    finally:
        # Never block on a hung call; queued items that did not start are cancelled.
        pool.shutdown(wait=False, cancel_futures=True)


def call_with_budget(work: Callable[[], T], budget: float) -> T:
    """`work()` in a helper thread; OutOfTimeError if it has not returned within `budget` seconds."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="budget")
    try:
        future = pool.submit(work)
        wait([future], timeout=budget, return_when=FIRST_EXCEPTION)
        if not future.done():
            raise OutOfTimeError(f"no answer within {budget:g} s")
        return future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(future: Future[T], budget: float) -> T | Exception:
    if not future.done():
        return OutOfTimeError(f"no answer within the run's {budget:g} s budget")
    error = future.exception()
    return error if isinstance(error, Exception) else future.result()


def run_per_group(
    items: Sequence[K],
    work: Callable[[K], T],
    group_of: Callable[[K], Hashable],
    per_group: int,
    budget: float,
) -> dict[K, T | Exception]:
    """`run_bounded`, with at most `per_group` items of one group (a subscription: ARM throttles per
    subscription) at a time. Items are interleaved across groups, so no group waits behind another.
    One item runs in the calling thread: what it calls keeps its own time budgets."""
    if len(items) == 1:
        try:
            return {items[0]: work(items[0])}
        except Exception as error:
            return {items[0]: error}
    groups: dict[Hashable, list[K]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    gates = {group: threading.BoundedSemaphore(per_group) for group in groups}
    interleaved = [
        item for row in itertools.zip_longest(*groups.values()) for item in row if item is not None
    ]

    def gated(item: K) -> T:
        with gates[group_of(item)]:
            return work(item)

    return run_bounded(interleaved, gated, per_group * max(1, len(groups)), budget)
