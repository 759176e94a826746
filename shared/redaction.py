"""Keep secrets and link tokens out of every log line and every error, whoever writes it.

A log-record factory rewrites each record as it is created - message, arguments and traceback - so
it covers the SDKs' loggers as well as ours, and every handler (the Functions worker's, App Insights',
pytest's). Known secret values are replaced, and so is anything shaped like a credential in a URL, a
header or a JSON body, in case a value we do not know about (a function key, a SAS signature) shows up.

The Python worker reports an exception that leaves a function by itself (its text and traceback), not
through `logging`, so `scrub` gives the entry points an exception that is already masked, chain included.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET = 6  # shorter values would mask ordinary words
# Names of credentials in query strings, form bodies and JSON. Not `\b`: it does not match after `_`.
_NAMES = r"(?:access_|id_|refresh_)?token|code|sig|client_secret|password|api[-_]?key"
# Group 1 is what stays (the name and its separator); the rest of each match is the secret.
_PATTERNS = [
    re.compile(rf"(?i)(?<![A-Za-z0-9])((?:{_NAMES})=)[^&\s'\"]+"),
    re.compile(rf"(?i)(\"(?:{_NAMES})\"\s*:\s*\")[^\"]*(?=\")"),
    re.compile(r"(?i)(?<![A-Za-z0-9])((?:AccountKey|SharedAccessSignature)=)[^;\s'\"]+"),
    re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
]
_CREDENTIAL_NAME = re.compile(r"(?i)code|sig|key|secret|token|password|pwd")
_CREDENTIAL_SHAPE = re.compile(r"(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])[A-Za-z0-9+/=_~.-]{20,}")

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


def is_credential(name: str, value: str) -> bool:
    """Whether a query parameter is worth masking: a credential by its name (`code`, `sig`, ...) or
    by its shape (a long mix of cases and digits). `clientId=default` is neither."""
    return len(value) >= MIN_SECRET and bool(
        _CREDENTIAL_NAME.fullmatch(name) or _CREDENTIAL_SHAPE.fullmatch(value)
    )


def scrub(error: BaseException) -> BaseException:
    """`error` itself if its text and chain hold nothing to mask; otherwise a copy of the same type
    with masked arguments and attributes, its cause chain masked into a note, and no chain attached."""
    if _is_clean(error):
        return error
    clone = type(error).__new__(type(error))
    clone.__dict__.update({name: _mask(value) for name, value in vars(error).items()})
    clone.args = _mask(error.args)
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if chained is not None:
        clone.add_note("Caused by (secrets masked):\n" + redact("".join(traceback.format_exception(chained))))
    clone.__suppress_context__ = True
    clone = clone.with_traceback(error.__traceback__)
    if _is_clean(clone):
        return clone
    # A type whose __str__ reads something we could not reach: keep nothing but the masked text.
    return RuntimeError(redact("".join(traceback.format_exception_only(error)).strip()))


def _is_clean(error: BaseException | None) -> bool:
    """No message or note in the chain needs masking. Traceback lines are source code, not data."""
    while error is not None:
        text = "".join(traceback.format_exception_only(error))
        if redact(text) != text:
            return False
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return True


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list):
        return type(value)(_mask(item) for item in value)
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    return value


def protect(secrets: Iterable[str]) -> None:
    """Mask these values from now on, in this process. Safe to call on every run."""
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET)
        if not _installed:
            _install_factory()
            _installed = True


def _install_factory() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:  # a broken format string must not lose the line; its text stays raw-free
            record.msg, record.args = redact(str(record.msg)), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(factory)
