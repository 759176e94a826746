"""Parsers for single App Setting values. Each returns the parsed value or raises ValueError with a
sentence that completes "<setting> ..." and never echoes a secret."""

from __future__ import annotations

import re
from email.utils import parseaddr
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .domain import INSTANCE_NAME, WORKSPACE_NAME, InstanceSelection

EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,253}")
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
MIN_SECRET_LENGTH = 32
# `<Azure ML workspace name>`-style placeholders; `Name <ops@contoso.com>` is a real address.
PLACEHOLDER = re.compile(r"<(?![^<>@\s]+@[^<>@\s]+>)[^<>]*>")
NIL_GUID = "00000000-0000-0000-0000-000000000000"


def is_placeholder(value: str) -> bool:
    return bool(PLACEHOLDER.search(value)) or value.strip() == NIL_GUID


def not_a_placeholder(value: str) -> None:
    """Refuse the values local.settings.json.example ships with: a published `cancel_link_secret`
    placeholder would sign links anyone can forge. Checked before every other rule."""
    if is_placeholder(value):
        raise ValueError(
            "still holds a placeholder from local.settings.json.example (a <...> text or the all-zero "
            "GUID): replace it with the real value"
        )


def boolean(value: str) -> bool:
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def bounded_int(value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high}, not {number}")
    return number


def matching(pattern: re.Pattern[str], what: str):
    def parse(value: str) -> str:
        if not pattern.fullmatch(value.strip()):
            raise ValueError(f"is not a valid {what}: {value!r}")
        return value.strip()

    return parse


def sender(value: str) -> tuple[str, str | None]:
    """`ops@contoso.com` or `Ops team <ops@contoso.com>` -> (address, display name)."""
    name, address = parseaddr(value.strip())
    if not address or not EMAIL.fullmatch(address) or "\n" in value or "\r" in value:
        raise ValueError(f"is not an e-mail address: {value!r}")
    return address, name or None


def email_list(value: str) -> tuple[str, ...]:
    items = [item.strip() for item in re.split(r"[,;]", value)]
    bad = [item for item in items if not EMAIL.fullmatch(item)]
    if bad:
        raise ValueError(f"has invalid e-mail address(es): {', '.join(map(repr, bad))}")
    return tuple(dict.fromkeys(items))


def optional_email_list(value: str) -> tuple[str, ...]:
    return email_list(value) if value.strip() else ()


def instance_selection(value: str) -> InstanceSelection:
    text = value.strip()
    if text == "*":
        return InstanceSelection(every_instance=True)
    names = [name.strip() for name in text.split(",")]
    bad = [name for name in names if not INSTANCE_NAME.fullmatch(name)]
    if bad:
        raise ValueError(
            "must be `*` or compute instance names (3-24 letters, digits, hyphens) separated by commas; "
            f"invalid: {', '.join(map(repr, bad))}"
        )
    unique: dict[str, str] = {}  # Azure names ignore case: `ci-a, CI-A` is one instance
    for name in names:
        unique.setdefault(name.lower(), name)
    return InstanceSelection(names=tuple(unique.values()))


def workspace_name(value: str) -> str:
    return matching(WORKSPACE_NAME, "Azure ML workspace name")(value)


def time_zone(value: str) -> ZoneInfo:
    # glibc reads `TZ=:Europe/Berlin` as the zone file Europe/Berlin; accept that spelling too.
    name = value.strip().removeprefix(":")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder (`Europe`), a huge name
        raise ValueError(f"is not an IANA time zone name (like Europe/Berlin): {value[:64]!r}") from None


# The currencies the Azure Retail Prices API serves (learn.microsoft.com, "Supported currencies").
CURRENCIES = ("USD", "AUD", "BRL", "CAD", "CHF", "CNY", "DKK", "EUR", "GBP", "INR", "JPY", "KRW", "NOK", "NZD",
              "RUB", "SEK", "TWD")  # fmt: skip


def currency(value: str) -> str:
    code = value.strip().upper()
    if code not in CURRENCIES:
        raise ValueError(
            f"must be a currency the Azure Retail Prices API serves ({', '.join(CURRENCIES)}), not {value!r}"
        )
    return code


def cancel_url(value: str) -> str:
    parts = urlsplit(value.strip())
    local = parts.hostname in {"localhost", "127.0.0.1"}
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        # The query may hold the function key: never echo the value.
        raise ValueError("must be an https:// URL (http:// only for localhost)")
    if not parts.hostname or parts.fragment:
        raise ValueError("must be an absolute URL without a #fragment")
    return value.strip()


def secret(value: str) -> str:
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long (it has {len(value)})")
    return value


def one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be a single line")
    return value.strip()


def exactly(expected: str):
    def parse(value: str) -> str:
        if value.strip().lower() != expected:
            raise ValueError(f"must be {expected!r}, not {value!r}")
        return expected

    return parse


def one_of(*allowed: str):
    def parse(value: str) -> str:
        if value.strip().lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")
        return value.strip().lower()

    return parse


def https_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"must be an https:// URL without query, like https://name.example.net/, not {value!r}"
        )
    return value.strip().rstrip("/")


def acs_connection_string(value: str) -> str:
    pairs = dict(part.split("=", 1) for part in value.strip().split(";") if "=" in part)
    if not (pairs.get("endpoint", "").startswith("https://") and pairs.get("accesskey")):
        # The value holds a key: never echo it.
        raise ValueError(
            "is not a Communication Services connection string (endpoint=https://...;accesskey=...)"
        )
    return value.strip()


def connection_string(value: str) -> str:
    pairs = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    if pairs.get("UseDevelopmentStorage", "").lower() == "true":
        return value
    if not ("AccountName" in pairs or "TableEndpoint" in pairs):
        raise ValueError("is not a storage connection string (AccountName=...;AccountKey=... expected)")
    return value
