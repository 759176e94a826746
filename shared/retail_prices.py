"""VM list prices from the Azure Retail Prices API (port PriceList), cached for a week (port PriceCache).

`RetailPricesApi` asks `GET https://prices.azure.com/api/retail/prices` for one size in one region
(`shared.prices.retail_filter`, with `currencyCode='EUR'` in the API's quoting style) over one pooled
`requests.Session`: no authentication (the API has none, so nothing secret is ever sent), every
`NextPageLink` followed on the API's own origin only (the API writes its links with an explicit `:443`),
and the Linux pay-as-you-go meter picked from all the pages (`shared.prices.hourly_price`). It sends no
`api-version`: the default version compares filter values without case, so Azure ML's spelling of a
size (`STANDARD_DS3_V2`) matches the API's (`Standard_DS3_v2`); from `2023-01-01-preview` on it would not.
Items in another currency than the one asked for are ignored. Errors are ours (shared.errors, service
"Retail Prices"): 408, 429, 5xx, timeouts and broken connections are TransientServiceError with the
server's Retry-After, anything else ServiceError. Nothing here retries: shared.retry.RetryPolicy decides.

`CachedPrices` puts the ledger's price cache (`PriceCache`, in the app's table) in front of any PriceList:
an entry fetched less than `max_age` (7 days) ago is used as it is — "not listed" (None) included — else
the API is asked and its answer stored. When the API fails, an older entry is used (stale beats none);
with no entry at all the error goes up, and the report shows hours instead of money for that size. The
cache is only a saving: one that cannot be read or written is logged and the API asked instead. Build one
per run; within it each (region, size, currency) is looked up once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import ServiceError, TransientServiceError
from .ports import PriceCache, PriceList
from .prices import hourly_price, retail_filter
from .retry import retry_after_seconds

SERVICE = "Retail Prices"
ENDPOINT = "https://prices.azure.com"
PATH = "/api/retail/prices"
TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
MAX_PAGES = 50  # one size in one region is a dozen items: more pages than this is a loop
CACHE_MAX_AGE = timedelta(days=7)
_DEFAULT_PORTS = {"https": 443, "http": 80}

log = logging.getLogger(__name__)


class RetailPricesApi:
    """PriceList over the public Retail Prices API. Safe to share between threads; `close()` when done."""

    def __init__(self, endpoint: str = ENDPOINT, timeout: tuple[float, float] = TIMEOUT):
        self.endpoint = endpoint.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        pooled = HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=0)
        self._session.mount("https://", pooled)
        self._session.mount("http://", pooled)

    def hourly_price(self, region: str, size: str, currency: str) -> float | None:
        return hourly_price(self.items(region, size, currency), region, size)

    def items(self, region: str, size: str, currency: str) -> list[dict]:
        """Every item the API lists for `size` in `region` in `currency`, all pages."""
        currency = currency.strip().upper()
        what = f"listing the prices of {size} in {region} ({currency})"
        odata = retail_filter(region, size)
        params = f"currencyCode={quote(_literal(currency), safe='')}&$filter={quote(odata, safe='')}"
        url = f"{self.endpoint}{PATH}?{params}"
        items: list[dict] = []
        for _ in range(MAX_PAGES):
            page = self._page(url, what)
            listed = page.get("Items")
            if not isinstance(listed, list):
                raise ServiceError(SERVICE, f"{what}: the answer has no Items")
            items.extend(
                item
                for item in listed
                if isinstance(item, dict) and str(item.get("currencyCode", currency)).upper() == currency
            )
            link = page.get("NextPageLink")
            if not link:
                return items
            url = urljoin(url, str(link))
            if not _same_origin(url, self.endpoint):
                raise ServiceError(SERVICE, f"{what}: a NextPageLink to another host ({_host(url)}) refused")
        raise ServiceError(SERVICE, f"{what}: still more pages after {MAX_PAGES}")

    def close(self) -> None:
        self._session.close()

    def _page(self, url: str, what: str) -> dict:
        try:
            response = self._session.get(url, headers={"Accept": "application/json"}, timeout=self._timeout)
            response.content  # noqa: B018 - read it all, so the connection goes back to the pool
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as error:
            raise TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})") from error
        except requests.exceptions.RequestException as error:
            raise ServiceError(SERVICE, f"{what}: {type(error).__name__}") from error
        if response.status_code != 200:
            raise _http_error(response, what)
        try:
            page = response.json()
        except ValueError as error:
            raise ServiceError(SERVICE, f"{what}: unreadable answer (not JSON)") from error
        if not isinstance(page, dict):
            raise ServiceError(SERVICE, f"{what}: unreadable answer (not an object)")
        return page


class CachedPrices:
    """PriceList: `api` behind `cache`; see the module docstring. `clock` returns an aware datetime."""

    def __init__(
        self,
        api: PriceList,
        cache: PriceCache,
        clock: Callable[[], datetime],
        max_age: timedelta = CACHE_MAX_AGE,
    ):
        self._api, self._cache, self._clock, self._max_age = api, cache, clock, max_age
        self._known: dict[tuple[str, str, str], float | None] = {}
        self._lock = threading.Lock()

    def hourly_price(self, region: str, size: str, currency: str) -> float | None:
        key = (region.lower(), size.lower(), currency.strip().upper())
        with self._lock:
            if key in self._known:
                return self._known[key]
        price = self._look_up(region, size, key[2])
        with self._lock:
            self._known[key] = price
        return price

    def _look_up(self, region: str, size: str, currency: str) -> float | None:
        now = self._clock()
        cached = self._read(region, size, currency)
        if cached is not None and -self._max_age < now - cached[1] < self._max_age:
            return cached[0]
        try:
            price = self._api.hourly_price(region, size, currency)
        except ServiceError as error:
            if cached is None:
                raise
            log.warning(
                "Prices: %s; using the price of %s in %s (%s) cached on %s",
                error, size, region, currency, cached[1].isoformat(timespec="seconds"),
            )  # fmt: skip
            return cached[0]
        try:
            self._cache.cache_price(region, size, currency, price, now)
        except ServiceError as error:
            log.warning(
                "Prices: could not cache the price of %s in %s (%s): %s", size, region, currency, error
            )
        return price

    def _read(self, region: str, size: str, currency: str) -> tuple[float | None, datetime] | None:
        try:
            return self._cache.cached_price(region, size, currency)
        except ServiceError as error:
            log.warning("Prices: could not read the cached price of %s in %s: %s", size, region, error)
            return None


def _literal(value: str) -> str:
    """An OData string literal: `'EUR'`, a quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def _http_error(response: requests.Response, what: str) -> ServiceError:
    status = response.status_code
    detail = f"HTTP {status}{_api_error(response)}"
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return TransientServiceError(SERVICE, f"{what}: {detail}", retry_after)
    return ServiceError(SERVICE, f"{what}: {detail}")


def _api_error(response: requests.Response) -> str:
    """`, Code: message` from the API's error body (`{"Error": {"Code", "Message"}}`), if it has one."""
    try:
        error = response.json().get("Error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict) or not error.get("Code"):
        return ""
    message = (str(error.get("Message") or "").strip().splitlines() or [""])[0][:300]
    return f", {error['Code']}: {message}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _same_origin(url: str, endpoint: str) -> bool:
    return _origin(url) == _origin(endpoint)


def _host(url: str) -> str:
    return urlsplit(url).netloc or "?"
