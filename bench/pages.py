"""Confirm page (GET) and cancel (POST against Azurite) latency, in process, through CancelShutDown.main."""

from __future__ import annotations

import importlib
import os
import statistics
import time
from datetime import UTC, datetime

import azure.functions as func

from loopback.traffic import Traffic
from shared.links import CancelGrant, LinkSigner
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar

from .report import Row

WARM_UP = 20


def measure_pages(
    settings: dict[str, str], azurite_connection_string: str, samples: int, traffic: Traffic
) -> list[Row]:
    """`settings` must put the next night's shutdown well after the measurement (links expire then), and
    its AzureWebJobsStorage lead through the Table gate that logs into `traffic`: one GET and one POST
    go that way first, to count their Table calls; the timed ones go to Azurite directly."""
    direct = {**settings, "AzureWebJobsStorage": azurite_connection_string}
    saved = dict(os.environ)
    try:
        os.environ.update(settings)
        cancel = importlib.import_module("CancelShutDown")
        tokens = _tokens(Settings.from_environ(direct), WARM_UP + samples + 1)
        traffic.clear_log()
        _timed(cancel, "GET", [tokens[-1]])
        get_calls = traffic.count("table")
        traffic.clear_log()
        _timed(cancel, "POST", [tokens[-1]])
        post_calls = traffic.count("table")
        os.environ.update(direct)
        get = _timed(cancel, "GET", [tokens[0]] * (WARM_UP + samples))[WARM_UP:]
        post = _timed(cancel, "POST", tokens[:-1])[WARM_UP:]  # every POST a new instance: a real insert
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return [
        _row(f"Confirm page (GET: {_calls(get_calls)}, in Azurite), in process", get, 0.005),
        _row(f"Cancel (POST: {_calls(post_calls)}, in Azurite), in process", post, 0.020),
    ]


def _calls(count: int) -> str:
    return f"{count} Table call{'s' if count != 1 else ''}"


def _tokens(settings: Settings, count: int) -> list[str]:
    """Links as the mail of the calendar's next night carries them: that night, the workspace's ARM id."""
    target = settings.target()
    night = ShutdownCalendar(target, settings.calendar_rules()).next_night(datetime.now(UTC))
    assert night is not None, "the calendar has no next night"
    signer = LinkSigner(settings.cancel_link_secret)
    return [
        signer.sign(CancelGrant(target.arm_id, f"ci-p{i:04d}", night.day, night.shutdown_at))
        for i in range(count)
    ]


def _timed(cancel, method: str, tokens: list[str]) -> list[float]:
    timings = []
    for token in tokens:
        request = func.HttpRequest(
            method, "https://bench/api/CancelShutDown", params={"token": token}, body=b""
        )
        started = time.perf_counter()
        response = cancel.main(request)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, (method, response.status_code, response.get_body()[:300])
    return timings


def _row(case: str, timings: list[float], p50_target: float) -> Row:
    p50 = statistics.median(timings)
    p99 = statistics.quantiles(timings, n=100)[98]
    checks = {f"p50 <= {p50_target * 1000:.0f} ms": p50 <= p50_target, "p99 <= 3 x p50": p99 <= 3 * p50}
    return Row(
        case,
        len(timings),
        timings,
        None,
        None,
        checks,
        timing=f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms",
    )
