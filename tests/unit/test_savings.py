"""The saving arithmetic (hours until the next workday starts x the hourly price) and price selection
from realistic Retail Prices API items."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from shared.prices import hourly_price, retail_filter
from shared.savings import back_to_work, saving, stopped_hours
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from tests.fakes import environ

EIGHT = time(8, 0)


def calendar(**overrides) -> ShutdownCalendar:
    settings = Settings.from_environ(
        environ(**{"shutdown_days": "Mon-Fri", "holidays": "DE-BY", **overrides})
    )
    return ShutdownCalendar(settings.target(), settings.calendar_rules())


def hours(day: date, stopped_at: datetime, **overrides) -> float:
    return stopped_hours(calendar(**overrides), day, stopped_at, EIGHT)


def berlin(year, month, day, hour, minute=0) -> datetime:
    cal = calendar()
    return datetime(year, month, day, hour, minute, tzinfo=cal.rules.zone).astimezone(UTC)


def test_a_weekday_stop_counts_until_eight_the_next_morning():
    assert hours(date(2026, 11, 25), berlin(2026, 11, 25, 20)) == 12  # Wednesday -> Thursday
    assert hours(date(2026, 11, 25), berlin(2026, 11, 25, 22)) == 10  # delayed by two hours


def test_a_friday_stop_counts_until_monday_morning():
    assert hours(date(2026, 11, 27), berlin(2026, 11, 27, 20)) == 60


def test_holidays_and_skip_days_extend_it():
    # Thursday 24 December; the 25th and 26th are holidays in Bavaria, then a weekend: Monday the 28th.
    assert back_to_work(calendar(), date(2026, 12, 24), EIGHT) == berlin(2026, 12, 28, 8)
    assert hours(date(2026, 12, 24), berlin(2026, 12, 24, 20)) == 84
    # A skip range after it: back on Monday 4 January.
    assert (
        hours(date(2026, 12, 24), berlin(2026, 12, 24, 20), skip_dates="2026-12-28..2027-01-01")
        == 84 + 7 * 24
    )


def test_a_weekend_shutdown_day_counts_only_the_night():
    every_day = calendar(shutdown_days="Mon-Sun", holidays="")
    assert stopped_hours(every_day, date(2026, 11, 27), berlin(2026, 11, 27, 20), EIGHT) == 12


@pytest.mark.parametrize(
    ("night", "expected"),
    [(date(2026, 3, 27), 59), (date(2026, 10, 23), 61)],  # the weekends the clocks change in Berlin
)
def test_dst_nights_count_the_real_hours(night, expected):
    assert hours(night, berlin(night.year, night.month, night.day, 20)) == expected


def test_a_stop_after_work_has_started_saves_nothing():
    assert hours(date(2026, 11, 25), berlin(2026, 11, 26, 9)) == 0


def test_saving_is_hours_times_price_or_unknown():
    assert saving(12, 0.276) == 3.31
    assert saving(12, None) is None


def item(**overrides) -> dict:
    base = {
        "currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": 0.293, "unitPrice": 0.293,
        "armRegionName": "westeurope", "location": "EU West", "effectiveStartDate": "2024-05-01T00:00:00Z",
        "meterId": "a0f7b7a2-0000-4000-8000-000000000001", "meterName": "D4s v3", "productId": "DZH318Z0BQ4L",
        "skuId": "DZH318Z0BQ4L/00QH", "productName": "Virtual Machines DSv3 Series", "skuName": "D4s v3",
        "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour", "type": "Consumption", "isPrimaryMeterRegion": True,
        "armSkuName": "Standard_D4s_v3",
    }  # fmt: skip
    return {**base, **overrides}


def test_the_linux_pay_as_you_go_meter_is_chosen():
    items = [
        item(productName="Virtual Machines DSv3 Series Windows", retailPrice=0.47),
        item(skuName="D4s v3 Spot", meterName="D4s v3 Spot", retailPrice=0.05),
        item(skuName="D4s v3 Low Priority", meterName="D4s v3 Low Priority", retailPrice=0.06),
        item(type="Reservation", unitOfMeasure="1 Hour", retailPrice=1500.0),
        item(type="DevTestConsumption", retailPrice=0.2),
        item(),
        item(armRegionName="eastus", retailPrice=0.192),
        item(armSkuName="Standard_D8s_v3", retailPrice=0.586),
    ]
    assert hourly_price(items, "westeurope", "STANDARD_D4S_V3") == 0.293  # Azure ML spells sizes in capitals


def test_the_latest_primary_meter_wins_and_no_meter_means_no_price():
    items = [
        item(effectiveStartDate="2022-01-01T00:00:00Z", retailPrice=0.25),
        item(effectiveStartDate="2025-01-01T00:00:00Z", retailPrice=0.31),
        item(effectiveStartDate="2026-01-01T00:00:00Z", retailPrice=0.99, isPrimaryMeterRegion=False),
    ]
    assert hourly_price(items, "westeurope", "Standard_D4s_v3") == 0.31
    assert (
        hourly_price(
            [item(productName="Virtual Machines DSv3 Series Windows")], "westeurope", "Standard_D4s_v3"
        )
        is None
    )
    assert hourly_price([], "westeurope", "Standard_D4s_v3") is None


def test_the_filter_names_one_size_in_one_region_and_escapes_quotes():
    assert retail_filter("westeurope", "Standard_D4s_v3") == (
        "serviceName eq 'Virtual Machines' and armRegionName eq 'westeurope' "
        "and armSkuName eq 'Standard_D4s_v3' and priceType eq 'Consumption'"
    )
    assert "armSkuName eq 'a''b'" in retail_filter("westeurope", "a'b")


def test_a_night_after_midnight_in_utc_is_counted_from_the_stop():
    stop = berlin(2026, 11, 25, 23, 30)
    assert hours(date(2026, 11, 25), stop) == 8.5
    assert hours(date(2026, 11, 25), stop + timedelta(hours=1)) == 7.5


def test_a_shutdown_after_midnight_counts_until_that_morning():
    # The night of Thursday 26 November is its 02:30: work starts at 08:00 the same day, not on Friday.
    assert hours(date(2026, 11, 26), berlin(2026, 11, 26, 2, 30), shutdown_time="02:30") == 5.5
    # Friday's 00:30 counts until Friday 08:00, not Monday's.
    assert hours(date(2026, 11, 27), berlin(2026, 11, 27, 0, 30), shutdown_time="00:30") == 7.5
    # Delayed past 08:00, it saves nothing, as an evening stop delayed past 08:00 would.
    assert hours(date(2026, 11, 26), berlin(2026, 11, 26, 8, 30), shutdown_time="02:30") == 0
    # The autumn change after a 02:30 shutdown (the first, CEST one): 08:00 CET is 6.5 real hours later.
    every_day = {"shutdown_days": "Mon-Sun", "holidays": "", "shutdown_time": "02:30"}
    assert hours(date(2026, 10, 25), berlin(2026, 10, 25, 2, 30), **every_day) == 6.5
