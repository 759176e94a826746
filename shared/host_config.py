"""What host.json says that the app must respect: how long one invocation may run (functionTimeout).

The stop phase of a sweep gets what is left of it after start-up, sign-in and listing, so a larger
plan (Premium, Dedicated, Flex Consumption) stops a larger fleet in one run without a code change.
"""

from __future__ import annotations

import json
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parent.parent
CONSUMPTION_DEFAULT = 300.0  # seconds, when host.json says nothing
UNBOUNDED = 1800.0  # what "-1" (no limit, Premium/Dedicated) is taken as: half an hour is plenty
RESERVE = 120.0  # start-up, sign-in, listing and the final save
SMALLEST_BUDGET = 60.0


def function_timeout(host_json: Path = APP_ROOT / "host.json") -> float:
    try:
        value = json.loads(host_json.read_text(encoding="utf-8")).get("functionTimeout")
    except (OSError, ValueError):
        return CONSUMPTION_DEFAULT
    if value is None:
        return CONSUMPTION_DEFAULT
    if str(value).strip() == "-1":
        return UNBOUNDED
    try:
        hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    except ValueError:
        return CONSUMPTION_DEFAULT
    return hours * 3600 + minutes * 60 + seconds


def stop_budget(host_json: Path = APP_ROOT / "host.json") -> float:
    """Seconds the stops of one sweep may take: the function timeout less what the rest needs."""
    return max(SMALLEST_BUDGET, function_timeout(host_json) - RESERVE)
