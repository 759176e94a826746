"""Signed cancel links: what a link grants, how it is signed, and which links we honour.

A link carries a token signed with `cancel_link_secret` (itsdangerous, HMAC-SHA1 over a salted key).
The token names the workspace (by its ARM id, so two workspaces of one name in different resource
groups never meet), the instance, the local day of the shutdown and the UTC instant of that shutdown.
It is good for the calendar's next night only, until that night's shutdown. Nobody without the
secret can mint or alter one. Tokens minted before workspaces were named by ARM id carry the bare
workspace name; they still work for the workspace of that name this app manages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadData, URLSafeSerializer

from .domain import INSTANCE_NAME, WORKSPACE_ID, WORKSPACE_NAME, Night, WorkspaceTarget
from .errors import ExpiredLinkError, InvalidLinkError
from .rendering import format_local

TOKEN_PARAMETER = "token"  # noqa: S105 - a query parameter name, not a secret
MAX_TOKEN_LENGTH = 512  # real tokens are ~150 characters; refuse to parse anything huge
_SALT = "aml-autoshutdown.cancel-link.v1"


@dataclass(frozen=True)
class CancelGrant:
    """What a valid link lets its holder do: keep `instance` running for the shutdown at `shutdown_at`."""

    workspace: str  # the workspace's ARM id (a bare name in tokens from before)
    instance: str
    day: date  # local date of the shutdown
    shutdown_at: datetime  # UTC, as announced in the mail
    recipient: str = ""  # the address the mail went to: a link is one person's (empty in older tokens)


class LinkSigner:
    def __init__(self, secret: str):
        self._serializer = URLSafeSerializer(secret, salt=_SALT)

    def sign(self, grant: CancelGrant) -> str:
        payload = {
            "w": grant.workspace,
            "i": grant.instance,
            "d": grant.day.isoformat(),
            "t": int(grant.shutdown_at.timestamp()),
        }
        if grant.recipient:
            payload["r"] = grant.recipient
        return self._serializer.dumps(payload)

    def verify(self, token: str | None) -> CancelGrant:
        """The grant in `token`, or InvalidLinkError if it is missing, damaged or not ours."""
        if not token:
            raise InvalidLinkError(
                "The link is incomplete: it carries no cancellation code.",
                "Open the link from the e-mail again; if your mail program broke it across lines, "
                "copy the whole address into the browser.",
            )
        if len(token) > MAX_TOKEN_LENGTH:
            raise _damaged()
        try:
            payload = self._serializer.loads(token)
        except (BadData, UnicodeError, ValueError):
            raise _damaged() from None
        return _grant_from(payload)


def check_target(grant: CancelGrant, target: WorkspaceTarget) -> None:
    """Refuse a genuine link for another workspace or an instance this app no longer manages."""
    named = target.is_named_by(grant.workspace) or grant.workspace.lower() == target.name.lower()
    if not named or not target.instances.includes(grant.instance):
        raise unmanaged(grant)


def unmanaged(grant: CancelGrant) -> InvalidLinkError:
    return InvalidLinkError(
        f"This link is for compute instance {grant.instance} in workspace {_name(grant.workspace)}, "
        "which this shutdown service does not manage (any more).",
        "Nothing was changed. Ask your Azure ML platform admin if you expected otherwise.",
    )


def check_grant(
    grant: CancelGrant, target: WorkspaceTarget, night: Night | None, now: datetime, zone: tzinfo = UTC
) -> Night:
    """The night `grant` keeps an instance for, or an error if the genuine link no longer applies:
    another workspace, an instance no longer managed, a shutdown that already began, or a night other
    than the next one (`night`, from the calendar)."""
    check_target(grant, target)
    if night is None or grant.day < night.day or (grant.day == night.day and now >= night.shutdown_at):
        raise expired(grant, zone)
    if grant.day != night.day:
        raise InvalidLinkError(
            f"This link is for the shutdown on {_day(grant.day)}, but the next shutdown is on {_day(night.day)}.",
            "Nothing was changed. Use the link from the e-mail sent before the shutdown you want to skip.",
        )
    return night


def expired(grant: CancelGrant, zone: tzinfo = UTC) -> ExpiredLinkError:
    """The 410 page of a link whose shutdown has begun: which instance, and when it was stopped."""
    return ExpiredLinkError(
        f"{grant.instance} was stopped by the shutdown on {format_local(grant.shutdown_at, zone)} (unless "
        "it was busy with a job then), so this link can no longer keep it running.",
        f"Start {grant.instance} again from Azure ML studio if you need it. To keep it running on a later "
        "night, use the link in that evening's e-mail.",
    )


def night_over(grant: CancelGrant, following: Night | None, zone: tzinfo) -> ExpiredLinkError:
    """A link whose night is over: it names that night and points to the mail of the next one."""
    later = (
        f" The next shutdown is {format_local(following.shutdown_at, zone)}; the e-mail before it has "
        "its own links."
        if following
        else ""
    )
    return ExpiredLinkError(
        f"This link was for the night of {_day(grant.day)}, which is over, so it no longer changes "
        f"anything for {grant.instance}.",
        f"Nothing was changed. To keep {grant.instance} running tonight, use the link in this evening's "
        f"e-mail.{later}",
    )


def _day(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def _name(workspace: str) -> str:
    return workspace.rsplit("/", 1)[-1]


def cancel_link(base_url: str, token: str) -> str:
    """`base_url` with the token added to its query; an existing query (`?code=...`) is kept."""
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_PARAMETER]
    query.append((TOKEN_PARAMETER, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _grant_from(payload: object) -> CancelGrant:
    if not isinstance(payload, dict) or set(payload) - {"r"} != {"w", "i", "d", "t"}:
        raise _damaged()
    workspace, instance, day, instant = payload["w"], payload["i"], payload["d"], payload["t"]
    recipient = payload.get("r", "")
    if not (isinstance(recipient, str) and len(recipient) <= 320 and "\n" not in recipient):
        raise _damaged()
    if not (
        isinstance(workspace, str)
        and (WORKSPACE_ID.fullmatch(workspace) or WORKSPACE_NAME.fullmatch(workspace))
        and isinstance(instance, str)
        and INSTANCE_NAME.fullmatch(instance)
        and isinstance(day, str)
        and isinstance(instant, int)
        and not isinstance(instant, bool)
    ):
        raise _damaged()
    try:
        return CancelGrant(
            workspace, instance, date.fromisoformat(day), datetime.fromtimestamp(instant, tz=UTC), recipient
        )
    except (ValueError, OverflowError, OSError):
        raise _damaged() from None


def _damaged() -> InvalidLinkError:
    return InvalidLinkError(
        "The link is damaged or was not issued by this shutdown service.",
        "Nothing was changed. Open the link from the most recent e-mail again, and make sure the "
        "whole address was copied.",
    )
