"""The one retry policy of the app, shared by the AzureML, Table Storage and SendGrid adapters' callers.

Only TransientServiceError is retried (throttling, 5xx, timeouts, refused connections). Waits grow
exponentially with jitter, so that many parallel callers throttled together do not come back together;
a server's Retry-After is honoured exactly (never retried sooner). If the server asks for longer than
`max_delay`, we give up at once instead: waiting would not fit in the function's time limit.
The SDKs' own retries are switched off (see azureml_workspace.py, table_ledger.py), so retries never stack.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import TransientServiceError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base_delay: float = 1.0  # seconds before the first retry, doubled each time
    max_delay: float = 30.0  # longest single wait, Retry-After included
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def call(self, operation: Callable[[], T], what: str) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except TransientServiceError as error:
                wait = self.delay(attempt, error.retry_after)
                if attempt == self.attempts or wait is None:
                    raise
                log.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", what, error, attempt, self.attempts - 1, wait
                )
                self.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt`, or None to give up now."""
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            return retry_after + self.jitter() * min(1.0, self.base_delay)
        backoff = self.base_delay * 2 ** (attempt - 1)
        return min(self.max_delay, backoff * (0.5 + self.jitter()))


# A sweep or a mail run has minutes (Functions timeout); a person waiting for a page has seconds.
BACKGROUND = RetryPolicy(attempts=4, base_delay=1.0, max_delay=30.0)
INTERACTIVE = RetryPolicy(attempts=3, base_delay=0.25, max_delay=2.0)
