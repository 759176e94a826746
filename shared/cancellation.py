"""CancelShutDown: a person follows the link from the mail and keeps an instance running tonight.

GET and HEAD only show what the link would do (mail scanners open every link); only POST writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import Enum

from .domain import Cancellation, ClientInfo
from .errors import MethodNotAllowedError
from .fanout import call_with_budget
from .links import CancelGrant, LinkSigner, check_grant
from .ports import CancelLedger
from .retry import INTERACTIVE, RetryPolicy
from .settings import Settings

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")
CLICK_DEADLINE = 4.0  # seconds from the press of the button to the page, whatever the storage does
ALLOWED_METHODS = (*READ_METHODS, "POST")


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
    zone: tzinfo  # for showing the shutdown time


def keep_instance_tonight(
    request: CancelRequest,
    settings: Settings,
    ledger: CancelLedger,
    now: datetime,
    policy: RetryPolicy = INTERACTIVE,
    deadline: float = CLICK_DEADLINE,
) -> CancelResult:
    method = request.method.upper()
    if method not in ALLOWED_METHODS:
        raise MethodNotAllowedError(
            "Links from the shutdown e-mail are opened in a browser and confirmed with the button.",
            "Open the link from the e-mail in your browser.",
        )
    grant = LinkSigner(settings.cancel_link_secret).verify(request.token)
    _, next_day = settings.next_shutdown(now)
    check_grant(grant, settings.workspace, settings.instances, settings.time_zone, now, next_day)
    if method in READ_METHODS:
        return CancelResult(Outcome.CONFIRM, grant, settings.time_zone)
    cancellation = Cancellation(
        grant.workspace, grant.instance, grant.day, now, request.client.ip, request.client.user_agent
    )
    what = f"recording the cancellation for {grant.instance}"
    # A person is waiting: every try, connect and read included, fits in one short deadline.
    new = call_with_budget(lambda: policy.call(lambda: ledger.record(cancellation), what), deadline)
    log.info(
        "%s: %s stays running on the night of %s",
        "Recorded" if new else "Already recorded", grant.instance, grant.day,
    )  # fmt: skip
    return CancelResult(Outcome.KEPT if new else Outcome.ALREADY_KEPT, grant, settings.time_zone)
