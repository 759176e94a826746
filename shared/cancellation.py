"""CancelShutDown: a person follows the link from the mail and keeps an instance running longer tonight:
until the shutdown + 1 h, + 2 h (`delay_options`), or all night.

GET and HEAD only show what the link would do (mail scanners open every link); only POST writes.
A keep is honoured only if tonight's sweep reads it. The sweep first claims the night (which closes it
to new keeps), then reads the keeps once and stores whom it honours on its record. So after storing a
keep, the click reads that record: no sweep yet means the sweep will read the keep; otherwise the
record says whether it did. After the shutdown, a link still works while its instance is kept: its stop
time can be moved later, until the sweep begins to stop it (then the page says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import Enum
from urllib.parse import parse_qs

from .delays import Choice, allowed, chosen, offered
from .domain import Cancellation, ClientInfo, Keep, Night
from .errors import ExpiredLinkError, MethodNotAllowedError, OutOfTimeError
from .fanout import call_with_budget
from .links import CancelGrant, LinkSigner, check_grant, check_target, expired, night_over
from .nightly import SWEEP
from .ports import CancelLedger
from .retry import INTERACTIVE, RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")
ALLOWED_METHODS = (*READ_METHODS, "POST")
CLICK_DEADLINE = 4.0  # seconds from the press of the button to the page, whatever the storage does
SWEEP_READ_POLL = 0.2  # a sweep that has claimed the night reads the keeps within milliseconds


class Outcome(Enum):
    CONFIRM = "confirm"  # valid link, nothing written yet
    KEPT = "kept"  # recorded now
    ALREADY_KEPT = "already kept"  # in force already, by an earlier (or someone else's, later) click


@dataclass(frozen=True)
class CancelRequest:
    method: str
    token: str | None
    client: ClientInfo
    delay: str | None = None  # the form's `delay`: "60", "120", ... or "night"; None: all night


@dataclass(frozen=True)
class CancelResult:
    outcome: Outcome
    grant: CancelGrant
    night: Night
    zone: tzinfo  # for showing times
    in_force: Keep | None = None  # what holds now (after a POST: after it)
    choices: tuple[Choice, ...] = ()


def form_delay(content_type: str | None, body: bytes) -> str | None:
    """The `delay` field of a posted form (application/x-www-form-urlencoded), or None. Anything odd
    (another content type, a huge body, bad encoding) counts as no choice: the page explains the rest."""
    if not (content_type or "").lower().startswith("application/x-www-form-urlencoded") or len(body) > 1024:
        return None
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return (fields.get("delay") or [None])[0]


def keep_instance_tonight(
    request: CancelRequest,
    now: datetime,
    calendar: ShutdownCalendar | Callable[[CancelGrant], ShutdownCalendar],
    signer: LinkSigner,
    ledger: CancelLedger,
    delay_options: Sequence[int] = (),
    policy: RetryPolicy = INTERACTIVE,
    deadline: float = CLICK_DEADLINE,
    sleep: Callable[[float], None] = time.sleep,
) -> CancelResult:
    method = request.method.upper()
    if method not in ALLOWED_METHODS:
        raise MethodNotAllowedError(
            "Links from the shutdown e-mail are opened in a browser and confirmed with a button.",
            "Open the link from the e-mail in your browser.",
        )
    grant = signer.verify(request.token)
    if not isinstance(calendar, ShutdownCalendar):
        calendar = calendar(grant)  # the calendar of the workspace the link names (or InvalidLinkError)

    def answer() -> CancelResult:
        return _answer(method, request, grant, now, calendar, ledger, delay_options, policy, sleep, deadline)

    # A person is waiting: every read and write, every try, connects included, fits in one deadline.
    return call_with_budget(answer, deadline)


def _answer(
    method, request, grant, now, calendar, ledger, delay_options, policy, sleep, deadline
) -> CancelResult:
    zone = calendar.rules.zone
    night, in_force = _night_and_keep(grant, calendar, ledger, now, policy, sleep, deadline)
    choices = offered(night, now, delay_options, in_force)
    if method in READ_METHODS:
        return CancelResult(Outcome.CONFIRM, grant, night, zone, in_force, choices)
    choice = chosen(request.delay, allowed(night, now, delay_options))  # not allowed: 400, nothing written
    client = request.client
    cancellation = Cancellation(
        night.target.arm_id, grant.instance, night.day, now, client.ip, client.user_agent, choice.until,
        grant.recipient,
    )  # fmt: skip
    what = f"recording the cancellation for {grant.instance}"
    new, keep = policy.call(lambda: ledger.record(night, cancellation), what)
    if keep.stopping or not _honoured(night, grant.instance, ledger, policy, sleep, deadline):
        log.warning(
            "Not honoured: a keep of %s came after the night of %s was swept", grant.instance, night.day
        )
        raise ExpiredLinkError(
            f"Tonight's shutdown of {grant.instance} began just before your request arrived, so it "
            "could not be kept running.",
            "Save your work now if you still can. Once it has stopped, you can start it again from "
            "Azure ML studio.",
        )
    until = "all night" if keep.until is None else f"until {keep.until.astimezone(zone):%H:%M}"
    log.info(
        "%s: %s stays running %s on the night of %s",
        "Recorded" if new else "Updated",
        grant.instance,
        until,
        night.day,
    )
    kept = Outcome.KEPT if keep.until == choice.until else Outcome.ALREADY_KEPT  # someone asked for longer
    return CancelResult(kept, grant, night, zone, keep, offered(night, now, delay_options, keep))


def _night_and_keep(grant, calendar, ledger, now, policy, sleep, deadline) -> tuple[Night, Keep | None]:
    """The night the link is for, and the keep in force. Before the shutdown that is the calendar's next
    night; after it, the link works only while its instance is kept by the sweep and not yet stopping."""
    check_target(grant, calendar.target)
    night = calendar.night(grant.day)
    if night is not None and now >= calendar.night_ends(night):
        raise night_over(grant, calendar.next_night(now), calendar.rules.zone)
    if night is None or now < night.shutdown_at:
        night = check_grant(grant, calendar.target, calendar.next_night(now), now, calendar.rules.zone)
        return night, policy.call(lambda: ledger.keep(night, grant.instance), "reading the keep in force")
    keep = policy.call(lambda: ledger.keep(night, grant.instance), "reading the keep in force")
    in_force = keep is not None and not keep.stopping and (keep.until is None or keep.until > now)
    if in_force and _honoured(night, grant.instance, ledger, policy, sleep, deadline):
        return night, keep
    if keep is not None and keep.stopping:
        raise ExpiredLinkError(
            f"{grant.instance} is being stopped: the time it was kept for has come.",
            "Start it again from Azure ML studio if you still need it tonight.",
        )
    raise expired(grant, calendar.rules.zone)


def _honoured(
    night: Night, instance: str, ledger: CancelLedger, policy: RetryPolicy, sleep, deadline: float
) -> bool:
    for _ in range(int(deadline / SWEEP_READ_POLL) + 1):  # bounded: this may run on after the page
        record = policy.call(lambda: ledger.night_record(night, SWEEP), "reading tonight's sweep record")
        if record is None:
            return True  # no sweep yet: it will read this keep
        if record.kept is not None:
            return instance.lower() in {name.lower() for name in record.kept}
        sleep(SWEEP_READ_POLL)  # the sweep claimed the night and is reading the keeps right now
    raise OutOfTimeError("tonight's sweep has begun but has not yet said which keeps it honours")
