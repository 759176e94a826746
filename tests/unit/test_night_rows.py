"""The rows a sweep keeps for the morning-after report: one per instance and night, priced."""

import logging
from datetime import UTC, date, datetime, timedelta

from shared.domain import Cancellation, Instance
from shared.errors import TransientServiceError
from shared.outcomes import BUSY, DELAYED, KEPT, NOT_RUNNING, OPTED_OUT, STOPPED
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.sweep import SweepOptions, stop_unclaimed_instances
from tests.fakes import FakeLedger, FakeWorkspace, environ

FRIDAY = datetime(2026, 11, 27, 19, 0, tzinfo=UTC)  # 20:00 in Berlin, a Friday
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda s: None)
PRICE = 0.276  # USD per hour


class Prices:
    def __init__(self, error: Exception | None = None):
        self.error, self.asked = error, []

    def hourly_price(self, region, size, currency):
        self.asked.append((region, size, currency))
        if self.error:
            raise self.error
        return PRICE if size == "STANDARD_DS3_V2" else None


def calendar() -> ShutdownCalendar:
    settings = Settings.from_environ(environ(shutdown_days="Mon-Fri", holidays="DE-BY"))
    return ShutdownCalendar(settings.target(), settings.calendar_rules())


def fleet() -> FakeWorkspace:
    def vm(name, state="Running", size="STANDARD_DS3_V2", tags=()):
        return Instance(name, state, f"{name}@contoso.com", tags, size, "westeurope")

    return FakeWorkspace(
        vm("ci-stop"), vm("ci-gpu", size="STANDARD_NC6S_V3"), vm("ci-kept"), vm("ci-later"),
        vm("ci-job", "JobRunning"), vm("ci-off", tags=(("auto-shutdown", "off"),)), vm("ci-idle", "Stopped"),
    )  # fmt: skip


def keep(ledger, cal, name, until=None):
    night = cal.night(date(2026, 11, 27))
    ledger.record(night, Cancellation(night.target.arm_id, name, night.day, FRIDAY - timedelta(hours=1),
                                      until=until, recipient=f"{name}@contoso.com"))  # fmt: skip


def rows(ledger) -> dict:
    return {row.instance: row for row in ledger.rows.values()}


def test_every_targeted_instance_gets_a_row_and_each_stop_its_saving(caplog):
    caplog.set_level(logging.INFO)
    cal, ledger, prices = calendar(), FakeLedger(told=lambda night: list(fleet().instances)), Prices()
    keep(ledger, cal, "ci-kept")
    keep(ledger, cal, "ci-later", until=FRIDAY + timedelta(hours=1))
    stop_unclaimed_instances(FRIDAY, cal, fleet(), ledger, SweepOptions(), NO_WAIT, prices=prices)
    found = rows(ledger)
    assert {name: row.outcome for name, row in found.items()} == {
        "ci-stop": STOPPED, "ci-gpu": STOPPED, "ci-kept": KEPT, "ci-later": DELAYED, "ci-job": BUSY,
        "ci-off": OPTED_OUT, "ci-idle": NOT_RUNNING,
    }  # fmt: skip
    stop = found["ci-stop"]
    assert (stop.size, stop.region, stop.hours, stop.saving) == ("STANDARD_DS3_V2", "westeurope", 60.0, 16.56)
    assert found["ci-gpu"].saving is None  # no price listed: hours only
    assert found["ci-later"].kept_by == "ci-later@contoso.com" and found["ci-later"].kept_until is not None
    assert sorted(prices.asked) == [
        ("westeurope", "STANDARD_DS3_V2", "USD"),
        ("westeurope", "STANDARD_NC6S_V3", "USD"),
    ]
    assert "failed 0, saving 16.56 USD + 60 h unpriced" in caplog.text


def test_the_prices_api_down_leaves_hours_and_never_fails_the_sweep(caplog):
    cal, ledger = calendar(), FakeLedger(told=lambda night: list(fleet().instances))
    prices = Prices(TransientServiceError("Retail Prices", "HTTP 503"))
    report = stop_unclaimed_instances(FRIDAY, cal, fleet(), ledger, SweepOptions(), NO_WAIT, prices=prices)
    assert report.failures == {} and rows(ledger)["ci-stop"].saving is None
    assert "saving 0.00 USD + 240 h unpriced" in caplog.text


def test_a_delayed_stop_turns_its_row_into_a_stop_counted_from_then():
    cal, ledger, prices, workspace = (
        calendar(),
        FakeLedger(told=lambda night: list(fleet().instances)),
        Prices(),
        fleet(),
    )
    keep(ledger, cal, "ci-later", until=FRIDAY + timedelta(hours=1))
    stop_unclaimed_instances(FRIDAY, cal, workspace, ledger, SweepOptions(), NO_WAIT, prices=prices)
    stop_unclaimed_instances(FRIDAY + timedelta(hours=1), cal, workspace, ledger, SweepOptions(), NO_WAIT,
                             prices=prices)  # fmt: skip
    later = rows(ledger)["ci-later"]
    assert (later.outcome, later.hours, later.kept_by, later.saving) == (
        STOPPED,
        59.0,
        "ci-later@contoso.com",
        16.28,
    )


def test_a_retried_tick_keeps_the_rows_of_what_an_earlier_tick_stopped():
    cal, ledger, workspace = calendar(), FakeLedger(told=lambda night: list(fleet().instances)), fleet()
    workspace.stop_errors["ci-gpu"] = [TransientServiceError("AzureML", "HTTP 500")] * 2
    try:
        stop_unclaimed_instances(FRIDAY, cal, workspace, ledger, SweepOptions(), NO_WAIT, prices=Prices())
    except Exception:
        pass  # the first tick fails for ci-gpu
    first = rows(ledger)["ci-stop"]
    stop_unclaimed_instances(FRIDAY + timedelta(minutes=5), cal, workspace, ledger, SweepOptions(), NO_WAIT,
                             prices=Prices())  # fmt: skip
    assert rows(ledger)["ci-stop"] == first and rows(ledger)["ci-gpu"].outcome == STOPPED


def test_a_dry_run_stores_no_rows():
    ledger = FakeLedger(told=lambda night: list(fleet().instances))
    stop_unclaimed_instances(
        FRIDAY, calendar(), fleet(), ledger, SweepOptions(dry_run=True), NO_WAIT, prices=Prices()
    )
    assert ledger.rows == {}
