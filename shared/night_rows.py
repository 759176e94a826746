"""Storing what a night did, instance by instance and priced, for the morning-after report.

Written after the stops, so neither pricing nor storing ever delays one. A price the API cannot give
leaves the row's saving empty (the report shows hours instead); a row that cannot be stored is logged
and fails the run, but never undoes or repeats a stop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from .domain import Keep, Night
from .errors import traceback_if_bug
from .outcomes import STOPPED, InstanceNight, delayed_stop, night_outcomes
from .ports import CancelLedger, PriceList
from .retry import RetryPolicy
from .shutdown_calendar import ShutdownCalendar
from .sweep_report import SweepReport

log = logging.getLogger(__name__)
ROWS = "the night's rows for the report"


def record_night(
    now: datetime, report: SweepReport, keeps: dict[str, Keep], calendar: ShutdownCalendar,
    ledger: CancelLedger, options, prices: PriceList | None, policy: RetryPolicy, stopped_before: Iterable[str] = (),
) -> SweepReport:  # fmt: skip
    """The main sweep's rows, priced and stored; the report with them (and a failure if not stored).
    Instances an earlier tick of the night stopped keep the row that tick stored."""
    if report.dry_run:
        return replace(report, currency=options.currency)
    earlier = {name.lower() for name in stopped_before}
    rows = [
        r
        for r in night_outcomes(report, keeps, calendar, options.workday_start, now)
        if r.instance.lower() not in earlier
    ]
    rows = priced(rows, prices, options.currency, policy)
    try:
        policy.call(lambda: ledger.record_outcomes(report.night, rows), f"storing {ROWS}")
    except Exception as error:
        log.error("Could not store %s: %s", ROWS, error, exc_info=traceback_if_bug(error))
        failures = {**report.failures, ROWS: str(error)}
        return replace(report, rows=tuple(rows), failures=failures, currency=options.currency)
    return replace(report, rows=tuple(rows), currency=options.currency)


def record_delayed_stops(
    now: datetime, night: Night, stopped: Iterable[str], calendar: ShutdownCalendar, ledger: CancelLedger,
    options, prices: PriceList | None, policy: RetryPolicy,
) -> list[InstanceNight]:  # fmt: skip
    """The rows of delayed instances stopped now: their sweep-time rows, turned into stops."""
    names = {name.lower() for name in stopped}
    if not names or options.dry_run:
        return []
    stored = policy.call(lambda: ledger.outcomes(night.target, night.day, night.day), f"reading {ROWS}")
    earlier = {row.instance.lower(): row for row in stored.get(night.day, ())}
    rows = [
        delayed_stop(
            earlier.get(name) or InstanceNight(name, STOPPED), calendar, night, now, options.workday_start
        )
        for name in sorted(names)
    ]
    rows = priced(rows, prices, options.currency, policy)
    policy.call(lambda: ledger.record_outcomes(night, rows), f"storing {ROWS}")
    return rows


def priced(
    rows: list[InstanceNight], prices: PriceList | None, currency: str, policy: RetryPolicy
) -> list[InstanceNight]:
    """Each stop with its saving: one price per (region, size), None where it cannot be had."""
    found: dict[tuple[str, str], float | None] = {}
    for row in rows:
        if row.outcome != STOPPED or not (row.region and row.size) or (row.region, row.size) in found:
            continue
        found[(row.region, row.size)] = _price(prices, row.region, row.size, currency, policy)
    return [row.priced(found.get((row.region or "", row.size or ""))) for row in rows]


def _price(prices: PriceList | None, region: str, size: str, currency: str, policy: RetryPolicy):
    if prices is None:
        return None
    try:
        price = policy.call(
            lambda: prices.hourly_price(region, size, currency), f"pricing {size} in {region}"
        )
    except Exception as error:
        log.warning("No price for %s in %s (the report shows hours instead): %s", size, region, error,
                    exc_info=traceback_if_bug(error))  # fmt: skip
        return None
    if price is None:
        log.warning(
            "The Retail Prices API lists no Linux price for %s in %s: the report shows hours", size, region
        )
    return price
