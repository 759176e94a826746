"""Invoke a function like the host does: real azure.functions objects in, `Executing`/`Executed` log lines."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest

from .functions import Function

log = logging.getLogger("Host.Function")


def run(function: Function, trigger_value: Any, reason: str) -> Any:
    """Call the function; log its outcome the way the Functions host does. Exceptions propagate."""
    invocation = uuid.uuid4()
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation)
    started = time.perf_counter()
    try:
        result = function(trigger_value)
    except Exception as error:
        took = (time.perf_counter() - started) * 1000
        log.error(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s: %s",
            function.name, invocation, took, type(error).__name__, error,
            exc_info=True,
        )  # fmt: skip
        raise
    took = (time.perf_counter() - started) * 1000
    log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", function.name, invocation, took)
    return result


def run_timer(function: Function, reason: str, past_due: bool = False, schedule: str | None = None) -> None:
    now = datetime.now(UTC).isoformat()
    status = {"Last": now, "Next": None, "LastUpdated": now}
    request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"Schedule": schedule})
    try:
        run(function, request, reason)
    except Exception:  # noqa: S110 - run() logged it as a failed execution, as the host does
        pass


def run_http(function: Function, request: func.HttpRequest) -> func.HttpResponse:
    try:
        response = run(function, request, "HTTP request")
    except Exception:  # run() logged it; the host answers 500 too
        return func.HttpResponse(status_code=500)
    if not isinstance(response, func.HttpResponse):
        log.error(
            "Functions.%s returned %r, not an HttpResponse; answering 500", function.name, type(response)
        )
        return func.HttpResponse(status_code=500)
    return response
