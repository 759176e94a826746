"""CancelShutDown: a person follows the link from the mail and keeps an instance running tonight.

GET and HEAD only show what the link would do (mail scanners open every link); only POST writes.
A keep is honoured only if tonight's sweep reads it. The sweep first claims the night (which closes it
to new keeps), then reads the keeps once and stores what it honours on its record. So after storing a
keep, the click reads that record: no sweep yet means the sweep will read the keep; otherwise the
record says whether it did. A success page is shown only for a keep that is, or will be, honoured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import Enum

from .domain import Cancellation, ClientInfo, Night
from .errors import ExpiredLinkError, MethodNotAllowedError, OutOfTimeError
from .fanout import call_with_budget
from .links import CancelGrant, LinkSigner, check_grant
from .ports import CancelLedger
from .retry import INTERACTIVE, RetryPolicy
from .shutdown_calendar import ShutdownCalendar

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")
ALLOWED_METHODS = (*READ_METHODS, "POST")
CLICK_DEADLINE = 4.0  # seconds from the press of the button to the page, whatever the storage does
SWEEP = "sweep"
SWEEP_READ_POLL = 0.2  # a sweep that has claimed the night reads the keeps within milliseconds


class Outcome(Enum):
    CONFIRM = "confirm"  # valid link, nothing written yet
    KEPT = "kept"  # recorded now
    ALREADY_KEPT = "already kept"  # recorded by an earlier click


@dataclass(frozen=True)
class CancelRequest:
    method: str
    token: str | None
    client: ClientInfo


@dataclass(frozen=True)
class CancelResult:
    outcome: Outcome
    grant: CancelGrant
    night: Night
    zone: tzinfo  # for showing the shutdown time


def keep_instance_tonight(
    request: CancelRequest,
    now: datetime,
    calendar: ShutdownCalendar,
    signer: LinkSigner,
    ledger: CancelLedger,
    policy: RetryPolicy = INTERACTIVE,
    deadline: float = CLICK_DEADLINE,
    sleep: Callable[[float], None] = time.sleep,
) -> CancelResult:
    method = request.method.upper()
    if method not in ALLOWED_METHODS:
        raise MethodNotAllowedError(
            "Links from the shutdown e-mail are opened in a browser and confirmed with the button.",
            "Open the link from the e-mail in your browser.",
        )
    grant = signer.verify(request.token)
    night = check_grant(grant, calendar.target, calendar.next_night(now), now)
    zone = calendar.rules.zone
    if method in READ_METHODS:
        return CancelResult(Outcome.CONFIRM, grant, night, zone)
    client = request.client
    cancellation = Cancellation(
        night.target.arm_id, grant.instance, night.day, now, client.ip, client.user_agent
    )

    def record_and_confirm() -> tuple[bool, bool]:
        what = f"recording the cancellation for {grant.instance}"
        new = policy.call(lambda: ledger.record(night, cancellation), what)
        return new, _honoured(night, grant.instance, ledger, policy, sleep, deadline)

    # A person is waiting: every try, connect and read included, fits in one short deadline.
    new, honoured = call_with_budget(record_and_confirm, deadline)
    if not honoured:
        log.warning(
            "Not honoured: a keep of %s came after the night of %s was swept", grant.instance, night.day
        )
        raise ExpiredLinkError(
            f"Tonight's shutdown of {grant.instance} began just before your request arrived, so it "
            "could not be kept running.",
            "Save your work now if you still can. Once it has stopped, you can start it again from "
            "Azure ML studio.",
        )
    log.info(
        "%s: %s stays running on the night of %s",
        "Recorded" if new else "Already recorded", grant.instance, night.day,
    )  # fmt: skip
    return CancelResult(Outcome.KEPT if new else Outcome.ALREADY_KEPT, grant, night, zone)


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
