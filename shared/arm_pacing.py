"""Pacing of ARM writes, so that a run never provokes a 429 by itself.

Azure Resource Manager throttles writes per subscription, principal and region with a token bucket:
200 writes, refilled at 10 per second. Every compute stop is a write. `WriteBucket` mirrors that
bucket on our side, shared by the parallel stops of one run: the first 200 go out at once, later ones
at 10 per second, and none of them earns a 429.

The adapter's bucket holds WRITE_HEADROOM tokens fewer than ARM's, and believes ARM when it says it
has fewer left (`observe_remaining`). A 429 that comes all the same (another client of the same
principal) is honoured like any other, through shared.retry.

A token is *reserved* under the lock and waited for outside it (the bucket may go below zero: each
waiting caller holds one future token), so callers are served in the order they asked, each waits
only for its own token, and the lock is never held while sleeping. A caller that cannot wait long
(a stop that must go out while its listing is fresh) passes `max_wait`, and is told False, without
using a token, when its token would come later than that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

ARM_WRITE_CAPACITY = 200
ARM_WRITES_PER_SECOND = 10.0
# Our bucket and ARM's do not count from the same instant: a write reaches ARM a network round trip
# after it left, and that delay varies (the first burst opens new connections, later writes reuse
# them). Keeping this many tokens in reserve absorbs 2 s of such differences at 10 writes a second.
WRITE_HEADROOM = 20


class WriteBucket:
    """A thread-safe token bucket: `take()` waits for a token; capacity and refill as ARM's."""

    def __init__(
        self,
        capacity: int = ARM_WRITE_CAPACITY,
        refill_per_second: float = ARM_WRITES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if capacity < 1 or refill_per_second <= 0:
            raise ValueError("a write bucket needs a capacity of at least 1 and a positive refill rate")
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)  # below zero: tokens already promised to waiting callers
        self._stamp = clock()

    def take(self, max_wait: float | None = None) -> bool:
        """Wait for a token and return True. With `max_wait` (seconds): if the token would only come
        later than that, return False at once, without waiting and without using a token."""
        with self._lock:
            self._refill()
            wait = self._wait_after_taking()
            if max_wait is not None and wait > max_wait:
                self._tokens += 1.0  # not taken after all
                return False
        if wait > 0:
            self._sleep(wait)
        return True

    def observe_remaining(self, remaining: int) -> None:
        """ARM said how many writes it has left (`x-ms-ratelimit-remaining-subscription-writes`): never
        believe we have more. Another run, or another client of the same principal, may have used some."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, float(remaining))

    @property
    def available(self) -> float:
        """Tokens in the bucket now (negative: promised to callers still waiting)."""
        with self._lock:
            self._refill()
            return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.capacity), self._tokens + elapsed * self.refill_per_second)

    def _wait_after_taking(self) -> float:
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.refill_per_second
