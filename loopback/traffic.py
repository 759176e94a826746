"""Request log and fault injection shared by every stand-in.

One :class:`Traffic` object sits in front of all stand-ins (the HTTPS server consults it for every
request), so a test can say "the second stop POST gets a 429" or "every ARM call takes 50 ms more"
without knowing which stand-in class serves it, and can afterwards ask what really went over the
wire: how many requests, which ones, and how many were in flight at the same time.

Service names used throughout: ``"aad"`` (login.microsoftonline.com), ``"arm"``
(management.azure.com), ``"azureml"`` (``<region>.api.azureml.ms``), ``"sendgrid"``
(api.sendgrid.com), ``"acs"`` (``<resource>.communication.azure.com``), ``"prices"``
(prices.azure.com, the Retail Prices API), ``"identity"`` (the managed-identity endpoint), ``"table"``
(the gate in front of Azurite) and ``"unknown"`` (any other host; always answered 404).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .background import HeadersAndBody


@dataclass
class Record(HeadersAndBody):
    """One request as the server saw it, plus what it answered (``status`` None = connection dropped)."""

    service: str
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int | None
    start: float  # time.monotonic() when the request had been read
    end: float  # time.monotonic() when the response was ready to be written (it is logged first)
    fault: bool = False  # answered by an injected fault, not by the stand-in
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    @property
    def duration(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        query = "?" + urlencode(self.query, safe="$/:") if self.query else ""
        return f"{self.method} https://{self.host}{self.path}{query} -> {self.status} [{self.service}]"


@dataclass
class Fault:
    """An injected answer (or extra latency) for requests matching service/method/path_regex.

    ``status=None`` means latency only: the request then goes on to the next fault or the stand-in.
    ``times=None`` applies to every matching request; ``times=n`` to the first n, then the fault is spent.
    ``path_regex`` is searched (``re.search``) in the path without the query string.
    ``skip=n`` lets the first n matching requests through untouched (e.g. fail only the 2nd page).
    ``drop=True`` closes the connection without any answer (the client sees a reset/EOF).
    """

    service: str | None = None
    method: str | None = None
    path_regex: str | None = None
    status: int | None = None
    headers: dict[str, str] | None = None
    body: Any = None
    times: int | None = None
    delay: float = 0.0
    drop: bool = False
    skip: int = 0
    hits: int = 0  # requests this fault was applied to
    seen: int = 0  # matching requests, including skipped ones

    def matches(self, service: str, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None


def _select(records: list[Record], service, method, path_regex, status) -> list[Record]:
    out = []
    for r in records:
        if service is not None and r.service != service:
            continue
        if method is not None and r.method.upper() != method.upper():
            continue
        if path_regex is not None and not re.search(path_regex, r.path):
            continue
        if status is not None and r.status != status:
            continue
        out.append(r)
    return out


class Traffic:
    """Thread-safe request log + fault list + global latency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._faults: list[Fault] = []
        #: Seconds added to every request (benchmarks: emulate a real network round trip).
        self.latency: float = 0.0

    # -- faults ---------------------------------------------------------------------------------
    def add_fault(
        self,
        service: str | None = None,
        method: str | None = None,
        path_regex: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        skip: int = 0,
    ) -> Fault:
        """Register a fault; returns it (``fault.hits`` tells how often it fired)."""
        if status is None and not delay and not drop:
            raise ValueError("a fault needs a status, a delay or drop=True")
        if path_regex is not None:
            re.compile(path_regex)
        fault = Fault(service, method, path_regex, status, headers, body, times, delay, drop, skip)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_faults(self, service: str, method: str, path: str) -> tuple[float, Fault | None]:
        """Consume the faults matching this request: (total extra delay, answering fault or None).

        Latency-only faults all add up; the first matching fault with a status (or drop) answers.
        """
        delay = self.latency
        with self._lock:
            for fault in self._faults:
                if not fault.matches(service, method, path):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.hits += 1
                delay += fault.delay
                if fault.status is not None or fault.drop:
                    return delay, fault
        return delay, None

    # -- log ------------------------------------------------------------------------------------
    def record(self, rec: Record) -> None:
        with self._lock:
            self._records.append(rec)

    def records(
        self,
        service: str | None = None,
        method: str | None = None,
        path_regex: str | None = None,
        status: int | None = None,
    ) -> list[Record]:
        """Snapshot of the log (in completion order), optionally filtered."""
        with self._lock:
            snapshot = list(self._records)
        return _select(snapshot, service, method, path_regex, status)

    def count(self, service=None, method=None, path_regex=None, status=None) -> int:
        return len(self.records(service, method, path_regex, status))

    def max_in_flight(self, service=None, method=None, path_regex=None, status=None) -> int:
        """Peak number of matching requests being served at the same moment (0 if none)."""
        events = []
        for r in self.records(service, method, path_regex, status):
            events.append((r.start, 1))
            events.append((r.end, -1))
        events.sort(key=lambda e: (e[0], e[1]))  # an end at the same instant as a start goes first
        peak = current = 0
        for _, step in events:
            current += step
            peak = max(peak, current)
        return peak

    def clear_log(self) -> None:
        with self._lock:
            self._records.clear()

    def reset(self) -> None:
        """Forget log and faults and set latency back to 0."""
        with self._lock:
            self._records.clear()
            self._faults.clear()
            self.latency = 0.0

    def dump(self) -> str:
        """Human-readable log, one request per line (for assertion messages)."""
        return "\n".join(str(r) for r in self.records())
