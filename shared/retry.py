"""The one retry policy of the app, shared by the AzureML, Table Storage and SendGrid adapters' callers.

Only TransientServiceError is retried (throttling, 5xx, timeouts, refused connections). Waits grow
exponentially with jitter, so that many parallel callers throttled together do not come back together.
A server's Retry-After (seconds or an HTTP date, see `retry_after_seconds`) is a floor: we never retry
sooner than asked, nor sooner than the backoff (so `Retry-After: 0` cannot turn into a burst). Through a
Backpressure shared by a run's parallel calls it holds back *every* caller, not only the one that was
told. If the server asks for longer than `max_delay`, waiting would not fit in the function's time
limit: the call that was told gives up at once, and so does every other call of the run that would
have to wait for it, instead of hitting the same 429 again.
The SDKs' own retries are switched off (see azureml_workspace.py, table_ledger.py), so retries never stack.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from .errors import TransientServiceError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Backpressure:
    """Shared by the parallel calls of one run to one service.

    When the service says "retry after N seconds", all callers hold off until then. Without it,
    `max_parallel` workers would keep hitting a throttled API and turn one 429 into a storm.
    `reason` is the throttling error that set the current hold, for callers that cannot wait that long.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self.reason: TransientServiceError | None = None

    def hold_until(self, instant: float, reason: TransientServiceError | None = None) -> None:
        with self._lock:
            if instant > self._until:
                self._until, self.reason = instant, reason

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
            self._wait_for(pressure, what)
            try:
                return operation()
            except TransientServiceError as error:
                wait = self.delay(attempt, error.retry_after)
                if error.retry_after is not None:  # throttled: everybody waits, this call too
                    pressure.hold_until(self.clock() + (wait or error.retry_after), error)
                if attempt == self.attempts or wait is None:
                    raise
                log.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", what, error, attempt, self.attempts - 1, wait
                )
                if error.retry_after is None:
                    self.sleep(wait)  # this call failed; the others may go on
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_for(self, pressure: Backpressure, what: str) -> None:
        remaining = self._held_for(pressure)
        if remaining > self.max_delay:
            # Somebody was told to wait longer than a run can: trying now would only earn another 429.
            reason = pressure.reason
            service = reason.service if reason else "the service"
            raise TransientServiceError(
                service,
                f"{what}: not tried, {service} asked this run to wait {remaining:.0f} s "
                f"(longer than the {self.max_delay:g} s it can wait)",
                remaining,
            )
        if remaining > 0:
            self.sleep(remaining + self._spread())

    def _held_for(self, pressure: Backpressure) -> float:
        return max(0.0, pressure.until - self.clock())

    def _spread(self) -> float:
        """Under a second (or base_delay) added to a Retry-After wait, so held-back callers do not all
        come back at the same instant."""
        return self.jitter() * min(1.0, self.base_delay)

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt`, or None to give up now. A throttled wait is
        spread further by `_wait_for`, as every caller held back by it is."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1) * (0.5 + self.jitter()))
        if retry_after is None:
            return backoff
        if retry_after > self.max_delay:
            return None
        # Retry-After is a floor, never a licence to retry sooner than the backoff (`Retry-After: 0`).
        return max(retry_after, backoff)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    None when absent or unreadable; a date in the past is 0 (the caller's backoff still applies).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# A sweep or a mail run has minutes (Functions timeout); a person waiting for a page has seconds.
BACKGROUND = RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)
INTERACTIVE = RetryPolicy(attempts=3, base_delay=0.25, max_delay=2.0)
