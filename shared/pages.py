"""The HTML pages CancelShutDown answers with, for every result and every error."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .cancellation import ALLOWED_METHODS, CancelResult, Outcome
from .errors import AutoShutdownError, CancelRequestError, ConfigurationError, TransientServiceError
from .rendering import format_local, render

log = logging.getLogger(__name__)

# The URL carries a token: never leak it through Referer, caches, frames or search engines.
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))


def for_result(result: CancelResult) -> Page:
    grant = result.grant
    facts = dict(
        instance=grant.instance,
        workspace=grant.workspace,
        shutdown_time=format_local(grant.shutdown_at, result.zone),
    )
    if result.outcome is Outcome.CONFIRM:
        return Page(
            200, render("confirm.html", tone="", title=f"Keep {grant.instance} running tonight?", **facts)
        )
    return Page(200, render("kept.html", tone="ok", title=f"{grant.instance} keeps running tonight", **facts))


def for_error(error: AutoShutdownError) -> Page:
    if isinstance(error, CancelRequestError):
        log.warning("CancelShutDown refused a request: %s", error)
        page = _problem(error.status, error.title, str(error), error.advice)
        if error.status == 405:
            page.headers["Allow"] = ", ".join(ALLOWED_METHODS)
        return page
    log.error("CancelShutDown could not complete a request: %s", error)
    if isinstance(error, ConfigurationError):
        return _unavailable("The shutdown service is not configured correctly.")
    if isinstance(error, TransientServiceError):
        page = _unavailable("The shutdown service could not record your request just now.")
        page.headers["Retry-After"] = "30"
        return page
    return _unavailable("The shutdown service could not reach its storage.")


def for_bug() -> Page:
    return _problem(
        500,
        "Something went wrong",
        "The shutdown service hit an unexpected error. Your request was not recorded.",
        "Please try the link again in a minute. If it keeps failing, tell your Azure ML platform admin.",
    )


def _unavailable(message: str) -> Page:
    return _problem(
        503,
        "Could not record your request",
        f"{message} Nothing was recorded: tonight's shutdown still applies.",
        "Please try the link again in a minute. If it keeps failing, tell your Azure ML platform admin.",
    )


def _problem(status: int, title: str, message: str, advice: str) -> Page:
    return Page(status, render("problem.html", tone="problem", title=title, message=message, advice=advice))
