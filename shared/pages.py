"""The HTML pages CancelShutDown answers with, for every result and every error."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .cancellation import ALLOWED_METHODS, CancelResult, Outcome
from .delays import label
from .errors import (
    AutoShutdownError,
    CancelRequestError,
    ConfigurationError,
    OutOfTimeError,
    TransientServiceError,
)
from .rendering import clock, format_local, render

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
    grant, night, zone = result.grant, result.night, result.zone
    keep = result.in_force

    def at(instant) -> str:  # a stop time, read beside the shutdown's
        return clock(instant, zone, beside=night.shutdown_at)

    until = keep.until if keep else None
    facts = dict(
        instance=grant.instance,
        workspace=night.target.name,
        resource_group=night.target.resource_group,
        shutdown_time=format_local(night.shutdown_at, zone),
        shutdown_clock=clock(night.shutdown_at, zone, beside=until),
        choices=[{"value": c.value, "label": label(c, grant.instance, night, zone)} for c in result.choices],
    )
    if result.outcome is Outcome.CONFIRM:
        in_force = None if keep is None else ("all night" if until is None else f"until {at(until)}")
        if keep is not None and until is None:
            facts["choices"] = []  # kept all night: nothing longer to offer
        if keep is not None and not facts["choices"]:  # reopened to check: say what holds, and by whom
            return Page(200, render("status.html", tone="ok", **_status(keep, grant, zone, at), **facts))
        title = f"Keep {grant.instance} running?" if keep else f"Keep {grant.instance} running tonight?"
        return Page(200, render("confirm.html", tone="", title=title, in_force=in_force, **facts))
    title = (
        f"{grant.instance} keeps running tonight"
        if until is None
        else f"{grant.instance} now stops at {at(until)}"
    )
    body = render(
        "kept.html", tone="ok", title=title, until=until and at(until),
        longer=result.outcome is Outcome.ALREADY_KEPT, **facts,
    )  # fmt: skip
    return Page(200, body)


def _status(keep, grant, zone, at) -> dict:
    held = "tonight" if keep.until is None else f"until {at(keep.until)}"
    who = [] if keep.is_hold or not keep.recipient else [f"by {keep.recipient}"]
    if keep.requested_at is not None:
        who.append(f"at {keep.requested_at.astimezone(zone):%H:%M}")
    why = "its notice period" if keep.is_hold else " ".join(who)
    return dict(title=f"{grant.instance} is kept running {held}", held=held, why=why)


def for_error(error: AutoShutdownError) -> Page:
    if isinstance(error, CancelRequestError):
        log.warning("CancelShutDown refused a request: %s", error)
        page = _problem(error.status, error.title, str(error), error.advice)
        if error.status == 405:
            page.headers["Allow"] = ", ".join(ALLOWED_METHODS)
        return page
    if isinstance(error, ConfigurationError):
        # The invocation itself succeeds (it answered a page): this line is what the alert looks for.
        log.error("CancelShutDown is misconfigured and refuses every click: %s", error)
        return _problem(
            500,
            "The shutdown service is misconfigured",
            "The shutdown service is not configured correctly, so it cannot record any request. "
            "Nothing was recorded: tonight's shutdown still applies.",
            "Save your work before the shutdown. Trying again will not help until your Azure ML platform "
            "admin fixes the settings; the problem is in the service's error log.",
        )
    log.error("CancelShutDown could not complete a request: %s", error)
    if isinstance(error, OutOfTimeError):
        # The write may still land after we stopped waiting: say so, and make pressing again safe.
        return _problem(
            503,
            "Your request was not confirmed",
            "The shutdown service did not hear back from its storage in time, so your request may or "
            "may not have been recorded.",
            "Press the button again: pressing it twice never does any harm. Until you see the "
            "confirmation, assume tonight's shutdown still applies.",
            retry=True,
        )
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
        "Please try again in a minute. If it keeps failing, tell your Azure ML platform admin.",
        retry=True,
    )


def _problem(status: int, title: str, message: str, advice: str, retry: bool = False) -> Page:
    body = render("problem.html", tone="problem", title=title, message=message, advice=advice, retry=retry)
    return Page(status, body)
