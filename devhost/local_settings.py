"""local.settings.json -> environment variables, as `func start` loads it.

Like Core Tools, a variable already set in the environment wins over the file (and is reported).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("Host.Settings")


class LocalSettingsError(Exception):
    pass


def load(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LocalSettingsError(f"{path}: cannot read it as JSON ({error})") from None
    if document.get("IsEncrypted"):
        raise LocalSettingsError(f"{path}: encrypted settings are not supported; run `func settings decrypt`")
    values = document.get("Values")
    if not isinstance(values, dict):
        raise LocalSettingsError(f'{path}: expected a "Values" object')
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply(values: dict[str, str]) -> None:
    for name, value in values.items():
        if name in os.environ and os.environ[name] != value:
            log.warning(
                "Skipping '%s' from local settings as it's already defined in current environment variables.",
                name,
            )
            continue
        os.environ[name] = value
