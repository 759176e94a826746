"""The one retry policy of the app, shared by the AzureML, Table Storage and SendGrid adapters' callers.

Only TransientServiceError is retried (throttling, 5xx, timeouts, refused connections). Waits grow
exponentially with jitter, so that many parallel callers throttled together do not come back together;
a server's Retry-After is honoured exactly (never retried sooner), and through a Backpressure shared by
a run's parallel calls it holds back *every* caller, not only the one that was told. If the server asks
for longer than `max_delay`, we give up at once instead: waiting would not fit in the function's time limit.
The SDKs' own retries are switched off (see azureml_workspace.py, table_ledger.py), so retries never stack.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import TransientServiceError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Backpressure:
    """Shared by the parallel calls of one run to one service.

    When the service says "retry after N seconds", all callers hold off until then. Without it,
    `max_parallel` workers would keep hitting a throttled API and turn one 429 into a storm.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def hold_until(self, instant: float) -> None:
        with self._lock:
            self._until = max(self._until, instant)

    @property
    def until(self) -> float:
        return self._until


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base_delay: float = 1.0  # seconds before the first retry, doubled each time
    max_delay: float = 30.0  # longest single wait, Retry-After included
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def call(self, operation: Callable[[], T], what: str, backpressure: Backpressure | None = None) -> T:
        pressure = backpressure or Backpressure()
        for attempt in range(1, self.attempts + 1):
            self._wait_for(pressure)
            try:
                return operation()
            except TransientServiceError as error:
                wait = self.delay(attempt, error.retry_after)
                if attempt == self.attempts or wait is None:
                    raise
                log.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", what, error, attempt, self.attempts - 1, wait
                )
                if error.retry_after is not None:  # throttled: everybody waits, this call too
                    pressure.hold_until(self.clock() + error.retry_after)
                else:
                    self.sleep(wait)  # this call failed; the others may go on
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_for(self, pressure: Backpressure) -> None:
        remaining = pressure.until - self.clock()
        if remaining > 0:
            self.sleep(remaining + self._spread())

    def _spread(self) -> float:
        """Under a second (or base_delay) added to a Retry-After wait, so held-back callers do not all
        come back at the same instant."""
        return self.jitter() * min(1.0, self.base_delay)

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt`, or None to give up now."""
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            return retry_after + self._spread()
        backoff = self.base_delay * 2 ** (attempt - 1)
        return min(self.max_delay, backoff * (0.5 + self.jitter()))


# A sweep or a mail run has minutes (Functions timeout); a person waiting for a page has seconds.
BACKGROUND = RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)
INTERACTIVE = RetryPolicy(attempts=3, base_delay=0.25, max_delay=2.0)
