"""Keep secrets and link tokens out of every log line, whoever logs it and at whatever level.

A log-record factory rewrites each record as it is created - message, arguments and traceback - so
it covers the SDKs' loggers as well as ours, and every handler (the Functions worker's, App Insights',
pytest's). Known secret values are replaced, and so is anything shaped like a credential in a URL or
a header, in case a value we do not know about (a function key, a SAS signature) shows up.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable

MASK = "***"
MIN_SECRET = 6  # shorter values would mask ordinary words
_PATTERNS = [
    re.compile(r"(?i)\b(token|code|sig|client_secret|password|api[-_]?key)=[^&\s'\"]+"),
    re.compile(r"(?i)\b(AccountKey|SharedAccessSignature)=[^;\s'\"]+"),
    re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9._~+/=-]+"),
]

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{'=' if '=' in m.group(0) else ' '}{MASK}", text)
    return text


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
