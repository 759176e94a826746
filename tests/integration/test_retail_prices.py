"""VM list prices: the Retail Prices adapter over real HTTPS, its week-long cache in Table Storage, and the
stand-in for the API.

- RetailPricesApi against the stand-in (through the CONNECT proxy and the test CA, as the real API would
  be reached): the Linux pay-as-you-go meter picked from pages that also list Windows, Spot, Low Priority,
  DevTest and Reservation meters; every page followed on one connection; EUR; a size not listed; errors
  (503 with Retry-After, 400, a dropped connection, a NextPageLink to another host).
- CachedPrices over both ledger adapters and identity-based storage (Azurite): a second ask within 7 days
  makes no API call, after 7 days the API is asked again, the API down with an old price uses it; each
  adapter reads the other's rows.
- The stand-in itself: its filter parser, 400 in the API's shape, paging, case rules, currencies.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from loopback.prices import (
    DOCUMENTED_PAGE_SIZE,
    FilterError,
    RetailPricesStandIn,
    canonical_sku,
    parse_filter,
)
from shared.data_tables_ledger import DataTablesLedger
from shared.errors import ServiceError, TransientServiceError
from shared.prices import retail_filter
from shared.retail_prices import CachedPrices, RetailPricesApi
from shared.table_ledger import TableCancelLedger
from tests.fakes import FakePriceCache, FakePrices
from tests.integration.test_data_tables_ledger import StaticToken

URL = "https://prices.azure.com/api/retail/prices"
DOCUMENTED_FIELDS = {
    "currencyCode", "tierMinimumUnits", "retailPrice", "unitPrice", "armRegionName", "location",
    "effectiveStartDate", "meterId", "meterName", "productId", "skuId", "productName", "skuName",
    "serviceName", "serviceId", "serviceFamily", "unitOfMeasure", "type", "isPrimaryMeterRegion", "armSkuName",
}  # fmt: skip
T0 = datetime(2026, 11, 24, 19, tzinfo=UTC)
_tables = itertools.count(1)


@pytest.fixture
def prices(standins):
    """The stand-in with nothing listed but what a test seeds."""
    standins.prices.clear()
    return standins.prices


@pytest.fixture
def api():
    client = RetailPricesApi()
    yield client
    client.close()


def served(standins) -> list[dict]:
    """Every item the stand-in answered with, all requests."""
    return [
        item
        for record in standins.records("prices", status=200)
        for item in json.loads(record.response_body)["Items"]
    ]


# ------------------------------------------------------------------------------- the adapter
def test_the_linux_pay_as_you_go_price_is_picked_from_a_realistic_page(standins, prices, api):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293, windows=0.569, spot=0.0574, low_priority=0.058)
    prices.seed_price("westeurope", "STANDARD_DS4_V2", 0.585)  # another size, never asked for
    assert api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    (record,) = standins.records("prices")
    assert record.method == "GET" and record.path == "/api/retail/prices"
    assert "Authorization" not in record.headers  # the API needs no key: nothing is sent
    assert record.query["currencyCode"] == "'USD'"
    assert record.query["$filter"] == retail_filter("westeurope", "STANDARD_DS3_V2")
    page = served(standins)
    assert {(i["skuName"], i["productName"].endswith("Windows")) for i in page} == {
        ("DS3 v2", False), ("DS3 v2", True), ("DS3 v2 Spot", False), ("DS3 v2 Spot", True),
        ("DS3 v2 Low Priority", False), ("DS3 v2 Low Priority", True),
    }  # fmt: skip
    assert {i["type"] for i in page} == {"Consumption"}  # priceType eq 'Consumption' leaves the rest out
    assert {i["armSkuName"] for i in page} == {"Standard_DS3_v2"}  # the API's spelling of the size
    assert all(set(i) >= DOCUMENTED_FIELDS for i in page)


def test_every_page_is_followed_on_one_connection(standins, prices, api):
    prices.seed_price("eastus", "Standard_D2s_v3", 0.096, primary=False)  # as the live API lists it
    prices.page_size = 2
    assert api.hourly_price("eastus", "STANDARD_D2S_V3", "USD") == 0.096
    skips = [r.query.get("$skip") for r in standins.records("prices")]
    assert skips == [None, "2", "4"]  # six Consumption meters, the Linux one on the last page
    assert standins.connections == 1  # one pooled session; the API's links name port 443 explicitly
    assert standins.proxy.connects == ["prices.azure.com:443"]


def test_prices_in_euros(standins, prices, api):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.2702, "EUR")
    assert api.hourly_price("westeurope", "STANDARD_DS3_V2", "eur") == 0.2702
    assert standins.records("prices")[0].query["currencyCode"] == "'EUR'"
    prices.remove_price("westeurope", "STANDARD_DS3_V2")
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.3)  # USD only: served converted, as Azure does
    assert api.hourly_price("westeurope", "STANDARD_DS3_V2", "EUR") == round(0.3 * 0.92, 6)


def test_items_in_another_currency_than_asked_are_ignored(standins, prices, api):
    page = {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
            "Items": [dict(_item(), currencyCode="EUR")], "NextPageLink": None, "Count": 1}  # fmt: skip
    standins.add_fault("prices", status=200, body=page, times=1)
    assert api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD") is None


def test_a_size_not_listed_has_no_price(standins, prices, api):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
    assert api.hourly_price("westeurope", "STANDARD_ND96AMSR_A100_V4", "USD") is None
    assert api.hourly_price("southindia", "STANDARD_DS3_V2", "USD") is None
    assert standins.count("prices", status=200) == 2


def test_throttled_or_unavailable_is_transient_with_retry_after(standins, api):
    standins.add_fault("prices", status=503, headers={"Retry-After": "7"}, times=1)
    with pytest.raises(TransientServiceError) as caught:
        api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    assert caught.value.service == "Retail Prices" and caught.value.retry_after == 7.0
    assert "HTTP 503, ServiceUnavailable" in str(caught.value)
    standins.add_fault("prices", status=429, times=1)
    with pytest.raises(TransientServiceError):
        api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    assert api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293  # the default catalogue
    assert standins.count("prices") == 3  # one request per call: nothing retries inside


def test_a_dropped_connection_is_transient_and_a_refusal_is_not(standins, api):
    standins.add_fault("prices", drop=True, times=1)
    with pytest.raises(TransientServiceError, match="no answer"):
        api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    standins.add_fault("prices", status=400, times=1)
    with pytest.raises(ServiceError, match="BadRequest: Invalid OData parameters supplied") as caught:
        api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    assert not isinstance(caught.value, TransientServiceError)


def test_a_next_page_link_to_another_host_is_refused(standins, api):
    page = {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
            "Items": [_item()], "Count": 1,
            "NextPageLink": "https://prices.azure.com.attacker.example/api/retail/prices?$skip=1"}  # fmt: skip
    standins.add_fault("prices", status=200, body=page, times=1)
    with pytest.raises(ServiceError, match=r"another host \(prices.azure.com.attacker.example\)"):
        api.hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    assert standins.count() == 1 and standins.count("unknown") == 0  # never asked


def _item(**overrides) -> dict:
    """The Linux meter of Standard_DS3_v2 in westeurope, as the stand-in lists it."""
    stand_in = RetailPricesStandIn(catalogue=[("westeurope", "Standard_DS3_v2", 0.293)])
    (linux,) = [i for i in stand_in.items() if i["type"] == "Consumption" and i["skuName"] == "DS3 v2"
                and not i["productName"].endswith("Windows")]  # fmt: skip
    return {**linux, **overrides}


# ---------------------------------------------------------------------- the cache, in the ledger
@pytest.fixture
def combined_ca(standins, azurite_oauth, monkeypatch, tmp_path):
    """Trust both the stand-ins' CA (the prices API) and Azurite's (identity-based storage)."""
    bundle = tmp_path / "cas.pem"
    bundle.write_text(Path(standins.ca_file).read_text() + Path(azurite_oauth.ca_file).read_text())
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "requests_ca_bundle", "ssl_cert_file"):
        monkeypatch.setenv(name, str(bundle))
    azurite_oauth.start()  # no-op when running
    return azurite_oauth


@pytest.fixture(params=["cosmosdb", "data-tables", "data-tables-identity"])
def ledger(request, standins):
    table = f"prices{next(_tables)}"
    if request.param == "data-tables-identity":
        storage = request.getfixturevalue("combined_ca")
        return DataTablesLedger(storage.table_endpoint, table, StaticToken())
    azurite = request.getfixturevalue("azurite")
    if request.param == "cosmosdb":
        return TableCancelLedger(azurite.connection_string, table)
    return DataTablesLedger.from_connection_string(azurite.connection_string, table)


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_price_is_asked_for_once_a_week(standins, prices, api, ledger):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
    clock = Clock()
    assert CachedPrices(api, ledger, clock).hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    assert standins.count("prices") == 1
    cached, fetched_at = ledger.cached_price("westeurope", "standard_ds3_v2", "usd")
    assert cached == 0.293 and fetched_at == T0

    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.31)  # a new price list...
    clock.now = T0 + timedelta(days=7) - timedelta(seconds=1)
    run = CachedPrices(api, ledger, clock)  # ...is not asked for within the week, by any later run
    assert run.hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    assert run.hourly_price("WestEurope", "Standard_DS3_v2", "usd") == 0.293  # once per run, too
    assert standins.count("prices") == 1

    clock.now = T0 + timedelta(days=7)
    assert CachedPrices(api, ledger, clock).hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.31
    assert standins.count("prices") == 2
    assert ledger.cached_price("westeurope", "STANDARD_DS3_V2", "USD") == (0.31, T0 + timedelta(days=7))


def test_not_listed_is_cached_too_and_currencies_apart(standins, prices, api, ledger):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
    clock = Clock()
    assert CachedPrices(api, ledger, clock).hourly_price("westeurope", "STANDARD_XYZ", "USD") is None
    assert ledger.cached_price("westeurope", "STANDARD_XYZ", "USD") == (None, T0)
    clock.now = T0 + timedelta(days=3)
    run = CachedPrices(api, ledger, clock)
    assert run.hourly_price("westeurope", "STANDARD_XYZ", "USD") is None
    assert standins.count("prices") == 1  # "not listed" is an answer, kept for the week
    assert run.hourly_price("westeurope", "STANDARD_DS3_V2", "EUR") == round(0.293 * 0.92, 6)
    assert ledger.cached_price("westeurope", "STANDARD_DS3_V2", "USD") is None  # only EUR was asked
    assert standins.count("prices") == 2


def test_the_api_down_uses_an_old_price_and_without_one_fails(standins, prices, api, ledger):
    prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
    CachedPrices(api, ledger, Clock()).hourly_price("westeurope", "STANDARD_DS3_V2", "USD")
    standins.add_fault("prices", status=503, headers={"Retry-After": "30"})
    later = Clock(T0 + timedelta(days=30))
    assert CachedPrices(api, ledger, later).hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    assert ledger.cached_price("westeurope", "STANDARD_DS3_V2", "USD") == (0.293, T0)  # still the old one
    with pytest.raises(TransientServiceError) as caught:
        CachedPrices(api, ledger, later).hourly_price("westeurope", "STANDARD_DS4_V2", "USD")
    assert caught.value.retry_after == 30.0
    assert standins.count("prices") == 3


def test_both_ledger_adapters_read_each_others_prices(azurite):
    cosmos = TableCancelLedger(azurite.connection_string, "pricesboth")
    tables = DataTablesLedger.from_connection_string(azurite.connection_string, "pricesboth")
    assert cosmos.cached_price("westeurope", "STANDARD_DS3_V2", "USD") is None  # no table yet
    assert tables.cached_price("westeurope", "STANDARD_DS3_V2", "USD") is None
    cosmos.cache_price("westeurope", "STANDARD_DS3_V2", "USD", 0.293, T0)
    tables.cache_price("eastus", "STANDARD_NC6S_V3", "EUR", 2.8152, T0 + timedelta(microseconds=250))
    tables.cache_price("eastus", "STANDARD_XYZ", "EUR", None, T0)
    assert tables.cached_price("WestEurope", "Standard_DS3_v2", "usd") == (0.293, T0)
    assert cosmos.cached_price("eastus", "STANDARD_NC6S_V3", "EUR") == (
        2.8152,
        T0 + timedelta(microseconds=250),
    )
    assert cosmos.cached_price("eastus", "STANDARD_XYZ", "EUR") == (None, T0)
    cosmos.cache_price("eastus", "STANDARD_NC6S_V3", "EUR", None, T0 + timedelta(days=8))  # replaced whole
    assert tables.cached_price("eastus", "STANDARD_NC6S_V3", "EUR") == (None, T0 + timedelta(days=8))


def test_a_cache_that_cannot_be_read_or_written_costs_an_api_call_not_the_price():
    api, cache = FakePrices({("westeurope", "STANDARD_DS3_V2"): 0.293}), FakePriceCache()
    cache.errors = [
        TransientServiceError("Table Storage", "reading"),
        TransientServiceError("Table Storage", "x"),
    ]
    assert CachedPrices(api, cache, Clock()).hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    assert len(api.calls) == 1 and cache.writes == []
    api.down = ServiceError("Retail Prices", "HTTP 400")
    with pytest.raises(ServiceError):
        CachedPrices(api, cache, Clock()).hourly_price("westeurope", "STANDARD_DS3_V2", "USD")


def test_a_price_cached_from_a_clock_far_ahead_is_not_trusted_forever():
    api, cache = FakePrices({("westeurope", "STANDARD_DS3_V2"): 0.293}), FakePriceCache()
    cache.cache_price("westeurope", "STANDARD_DS3_V2", "USD", 0.1, T0 + timedelta(days=365))
    assert CachedPrices(api, cache, Clock()).hourly_price("westeurope", "STANDARD_DS3_V2", "USD") == 0.293
    assert cache.entries[("westeurope", "standard_ds3_v2", "USD")] == (0.293, T0)


# ------------------------------------------------------------------------------- the stand-in
def test_the_filter_parser_reads_eq_clauses_joined_by_and():
    assert parse_filter(retail_filter("westeurope", "it's")) == [
        ("serviceName", "Virtual Machines"), ("armRegionName", "westeurope"), ("armSkuName", "it's"),
        ("type", "Consumption"),
    ]  # fmt: skip
    assert parse_filter("Location eq 'EU West' and productid eq 'X'") == [
        ("location", "EU West"),
        ("productId", "X"),
    ]
    assert parse_filter(None) == [] and parse_filter("  ") == []
    for text in (
        "osType eq 'Linux'",  # not a field the API filters on
        "armSkuName ne 'x'",
        "armSkuName eq 'x' or armSkuName eq 'y'",
        "contains(meterName, 'Spot')",
        "armSkuName eq 'unterminated",
        "armSkuName eq 'x' and",
        "armSkuName eq x",
    ):
        with pytest.raises(FilterError):
            parse_filter(text)


def test_an_unknown_field_is_a_400_in_the_apis_shape(standins):
    response = requests.get(URL, params={"$filter": "osType eq 'Linux'"}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {
        "Error": {"Code": "BadRequest", "Message": "Invalid OData parameters supplied"}
    }
    assert "osType" in response.headers["X-Standin-Reason"]
    for params in (
        {"$filter": "priceType eq 'OnDemand'"},  # not a price type
        {"currencyCode": "'XYZ'"},
        {"api-version": "2023-01-01"},  # the live API: "Unsupported API version"
        {"$skip": "-1"},
    ):
        assert requests.get(URL, params=params, timeout=10).status_code == 400, params


def test_paging_by_skip_until_the_next_page_link_is_null(standins):
    assert standins.prices.page_size == DOCUMENTED_PAGE_SIZE
    standins.prices.page_size = 7
    everything = standins.prices.items()
    pages, url = [], f"{URL}?$filter=serviceName%20eq%20%27Virtual%20Machines%27"
    while url:
        pages.append(requests.get(url, timeout=10).json())
        url = pages[-1]["NextPageLink"]
        if url:
            assert url.startswith("https://prices.azure.com:443/api/retail/prices?")
            assert dict(parse_qsl(urlsplit(url).query))["$filter"] == "serviceName eq 'Virtual Machines'"
    assert len(pages) == -(-len(everything) // 7) > 3
    assert [p["Count"] for p in pages] == [len(p["Items"]) for p in pages]
    assert [i for p in pages for i in p["Items"]] == everything  # each item once, in order
    assert {(p["BillingCurrency"], p["CustomerEntityId"], p["CustomerEntityType"]) for p in pages} == {
        ("USD", "Default", "Retail")
    }
    assert pages[-1]["NextPageLink"] is None


def test_price_types_and_case_rules_follow_the_api_versions(standins):
    sku = "armRegionName eq 'westeurope' and armSkuName eq 'STANDARD_DS3_V2'"
    every = requests.get(URL, params={"$filter": sku}, timeout=10).json()["Items"]
    assert {i["type"] for i in every} == {"Consumption", "DevTestConsumption", "Reservation"}
    assert {i.get("reservationTerm") for i in every if i["type"] == "Reservation"} == {"1 Year", "3 Years"}
    consumption = requests.get(URL, params={"$filter": f"{sku} and priceType eq 'consumption'"}, timeout=10)
    assert {i["type"] for i in consumption.json()["Items"]} == {"Consumption"}
    preview = {"api-version": "2023-01-01-preview"}  # values are case sensitive from this version on
    assert requests.get(URL, params={**preview, "$filter": sku}, timeout=10).json()["Items"] == []
    exact = "armRegionName eq 'westeurope' and armSkuName eq 'Standard_DS3_v2'"
    assert len(requests.get(URL, params={**preview, "$filter": exact}, timeout=10).json()["Items"]) == 10
    primary = requests.get(URL, params={"$filter": exact, "meterRegion": "'primary'"}, timeout=10).json()
    assert primary["Count"] == 10
    standins.prices.seed_price("westeurope", "Standard_DS3_v2", 0.293, primary=False)
    primary = requests.get(URL, params={"$filter": exact, "meterRegion": "'primary'"}, timeout=10).json()
    assert primary["Count"] == 9


def test_currencies_are_asked_in_the_apis_quoting_style(standins):
    usd = requests.get(URL, params={"$filter": "armSkuName eq 'Standard_DS3_v2'"}, timeout=10).json()
    eur = requests.get(
        URL, params={"currencyCode": "'EUR'", "$filter": "armSkuName eq 'Standard_DS3_v2'"}, timeout=10
    ).json()
    assert usd["BillingCurrency"] == "USD" and eur["BillingCurrency"] == "EUR"
    assert {i["currencyCode"] for i in eur["Items"]} == {"EUR"}
    assert [i["retailPrice"] for i in eur["Items"]] == pytest.approx(
        [i["retailPrice"] * 0.92 for i in usd["Items"]], rel=1e-4
    )


def test_sizes_are_spelled_the_apis_way():
    assert canonical_sku("STANDARD_DS3_V2") == "Standard_DS3_v2"
    assert canonical_sku("STANDARD_NC6S_V3") == "Standard_NC6s_v3"
    assert canonical_sku("STANDARD_NC24ADS_A100_V4") == "Standard_NC24ads_A100_v4"
    assert canonical_sku("Standard_D2s_v3") == "Standard_D2s_v3"
