"""Stops that never hit a busy instance: each goes out while the read that said Running is fresh.

A job can start on an instance at any moment. A stop is sent only while the listing that showed the
instance Running is at most FRESH_FOR seconds old; a stop that would go out later (the pool was busy,
ARM throttled) is not sent, and the instances left are listed again and re-checked rather than read
one by one. Adapters that read an instance before stopping it (azureml-core does) refuse busy ones too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .domain import Instance, StopOutcome
from .errors import OutOfTimeError
from .fanout import run_bounded
from .ports import ComputeWorkspace
from .retry import Backpressure, RetryPolicy

FRESH_FOR = 10.0  # seconds


def stop_while_fresh(
    names: Sequence[str],
    workspace: ComputeWorkspace,
    relist: Callable[[], list[Instance]],
    listed_at: float,
    clock: Callable[[], float],
    policy: RetryPolicy,
    azure: Backpressure,
    max_parallel: int,
    budget: float,
) -> dict[str, StopOutcome | Exception]:
    """Stop `names` (Running as of the listing taken at `listed_at`); each ends in a StopOutcome other
    than STALE, or in the exception that stopped it."""
    deadline = clock() + budget
    results: dict[str, StopOutcome | Exception] = {}
    tries_left = dict.fromkeys(names, policy.attempts)  # across re-listings: a stale read is no new try
    pending = list(names)
    while pending:
        fresh_until = listed_at + FRESH_FOR

        def stop(name: str, fresh_until: float = fresh_until) -> StopOutcome:
            def attempt() -> StopOutcome:
                if clock() > fresh_until:
                    return StopOutcome.STALE
                tries_left[name] -= 1
                outcome = workspace.stop(name)
                if outcome is StopOutcome.STALE:
                    tries_left[name] += 1  # the adapter held it back (ARM's write bucket): never sent
                return outcome

            tries = max(1, tries_left[name])
            return replace(policy, attempts=tries).call(attempt, f"stopping {name}", azure)

        remaining = budget if len(results) == 0 and pending == list(names) else max(0.0, deadline - clock())
        outcomes = run_bounded(pending, stop, max_parallel, remaining)
        stale = [name for name, result in outcomes.items() if result is StopOutcome.STALE]
        results.update({name: result for name, result in outcomes.items() if result is not StopOutcome.STALE})
        if not stale:
            break
        if clock() >= deadline:
            results.update({name: OutOfTimeError("no time left to list and stop it again") for name in stale})
            break
        listed_at = clock()
        try:
            listing = {instance.name.lower(): instance for instance in relist()}
        except Exception as error:
            results.update({name: error for name in stale})
            break
        pending = []
        for name in stale:
            instance = listing.get(name.lower())
            if instance is None or not (instance.is_running or instance.is_busy):
                results[name] = StopOutcome.NOT_RUNNING
            elif instance.is_busy:
                results[name] = StopOutcome.BUSY
            else:
                pending.append(name)
    return results
