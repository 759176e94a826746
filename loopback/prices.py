"""Stand-in for the Azure Retail Prices API (host ``prices.azure.com``, service ``"prices"``).

``GET /api/retail/prices`` answers the way Microsoft documents it
(https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices): no
authentication; an optional ``currencyCode`` in the API's quoting style (``currencyCode='EUR'``, USD
when absent); an OData ``$filter``; a page of the shape

    {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
     "Items": [{"currencyCode", "tierMinimumUnits", "retailPrice", "unitPrice", "armRegionName",
                "location", "effectiveStartDate", "meterId", "meterName", "productId", "skuId",
                "productName", "skuName", "serviceName", "serviceId", "serviceFamily", "unitOfMeasure",
                "type", "isPrimaryMeterRegion", "armSkuName"}, ...],
     "NextPageLink": "https://prices.azure.com:443/api/retail/prices?...&$skip=1000", "Count": 1000}

with ``NextPageLink`` null on the last page and ``Count`` the items of this page. The documentation says
1,000 items a page (older answers paged by 100): :attr:`RetailPricesStandIn.page_size` is a knob, so a
test can force many pages. Reservation items also carry ``reservationTerm``, as the real ones do.

``$filter``: ``<field> eq '<value>'`` clauses joined by ``and``, string literals with ``''`` for a quote.
Fields are the documented filter fields (``armRegionName``, ``Location``, ``meterId``, ``meterName``,
``productid``, ``skuId``, ``productName``, ``skuName``, ``serviceName``, ``serviceId``,
``serviceFamily``, ``priceType`` — the item's ``type`` — and ``armSkuName``; their names without case, as
the documentation itself spells them both ways). Values compare without case, as in the default API
version; with ``api-version=2023-01-01-preview`` they are case sensitive, as documented for that version
(so ``armSkuName eq 'STANDARD_DS3_V2'``, Azure ML's spelling, then matches nothing). An unknown field, a
``priceType`` that is not a price type, an unsupported ``api-version`` or currency, and anything this
small parser does not know (``or``, ``contains(...)``, parentheses, which the real API does accept) is a
400 in the API's error shape, ``{"Error": {"Code": "BadRequest", "Message": "Invalid OData parameters
supplied"}}`` (reported by users of the live endpoint; the documentation shows no error body), with the
stand-in's reason in an ``X-Standin-Reason`` header. ``meterRegion='primary'`` keeps primary meters only.

Prices: :meth:`RetailPricesStandIn.seed_price` lists one VM size in one region with the meters the real
API lists for it (as a response recorded from the live endpoint for Standard_D2s_v3 in eastus shows):
the Linux pay-as-you-go meter, Windows, Spot and Low Priority (each for Linux and Windows), two
DevTestConsumption meters (Windows, at the Linux prices), and 1- and 3-year Reservations (their
``retailPrice`` the price of the whole term). The Linux meter comes after the Spot and Low Priority
ones, so a client that stops at the first page or takes the first item gets it wrong. A price seeded in one currency is served in the others converted
at :attr:`RetailPricesStandIn.exchange_rates`; seed a currency explicitly for an exact figure.
:data:`DEFAULT_CATALOGUE` (illustrative prices of the right order, not quotes) is served
until :meth:`clear` and again after :meth:`reset`; :meth:`add_items` serves raw items as given. Faults
go through the shared Traffic (``add_fault("prices", ...)``); answers without a body get the error shape.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .server import Request, Response
from .traffic import Traffic

HOST = "prices.azure.com"
PATH = "/api/retail/prices"
SERVICE = "prices"
DOCUMENTED_PAGE_SIZE = 1000
#: The versions the documentation names; none at all is the default (case-insensitive) version.
API_VERSIONS = ("2021-10-01-preview", "2023-01-01-preview")
CASE_SENSITIVE_VERSIONS = ("2023-01-01-preview",)
#: The documented filter fields, by their name in lower case, and the item field each one reads.
FILTER_FIELDS = {
    "armregionname": "armRegionName", "location": "location", "meterid": "meterId",
    "metername": "meterName", "productid": "productId", "skuid": "skuId", "productname": "productName",
    "skuname": "skuName", "servicename": "serviceName", "serviceid": "serviceId",
    "servicefamily": "serviceFamily", "pricetype": "type", "armskuname": "armSkuName",
}  # fmt: skip
#: `priceType` values the API accepts (SavingsPlan is accepted and matches nothing); others are a 400.
PRICE_TYPES = ("Consumption", "DevTestConsumption", "Reservation", "SavingsPlan")
#: Units of a currency per US dollar: illustrative, for converting a seeded price. The keys are the
#: currencies the documentation lists as supported; any other is a 400.
EXCHANGE_RATES = {
    "USD": 1.0, "AUD": 1.52, "BRL": 5.4, "CAD": 1.37, "CHF": 0.88, "CNY": 7.2, "DKK": 6.85, "EUR": 0.92,
    "GBP": 0.79, "INR": 83.5, "JPY": 150.0, "KRW": 1350.0, "NOK": 10.6, "NZD": 1.65, "RUB": 92.0,
    "SEK": 10.5, "TWD": 32.0,
}  # fmt: skip
LOCATIONS = {
    "westeurope": "EU West", "northeurope": "EU North", "eastus": "US East", "eastus2": "US East 2",
    "westus2": "US West 2", "centralus": "US Central", "uksouth": "UK South",
    "germanywestcentral": "DE West Central", "francecentral": "FR Central", "swedencentral": "SE Central",
    "switzerlandnorth": "CH North",
}  # fmt: skip
VM_SERVICE_ID = "DZH313Z7MMC8"
INVALID = "Invalid OData parameters supplied"
_ERRORS = {
    400: ("BadRequest", INVALID),
    404: ("NotFound", "The requested resource was not found."),
    405: ("MethodNotAllowed", "The requested method is not allowed."),
    429: ("TooManyRequests", "Too many requests. Try again later."),
    500: ("InternalServerError", "An internal error occurred."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}

#: (region, size, Linux pay-as-you-go USD per hour): sizes Azure ML compute instances commonly run on.
DEFAULT_CATALOGUE: tuple[tuple[str, str, float], ...] = (
    ("westeurope", "Standard_DS3_v2", 0.293),
    ("westeurope", "Standard_DS11_v2", 0.185),
    ("westeurope", "Standard_D4s_v3", 0.23),
    ("westeurope", "Standard_E4ds_v4", 0.318),
    ("westeurope", "Standard_NC6s_v3", 3.366),
    ("eastus", "Standard_DS3_v2", 0.229),
    ("eastus", "Standard_D4s_v3", 0.192),
    ("eastus", "Standard_NC6s_v3", 3.06),
    ("northeurope", "Standard_DS3_v2", 0.263),
)


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    code, default = _ERRORS.get(status, (f"Http{status}", f"HTTP {status}"))
    return {"Error": {"Code": code, "Message": message or default}}


def _error(status: int, reason: str | None = None, message: str | None = None) -> Response:
    headers = {"X-Standin-Reason": reason} if reason else {}
    return Response(status, error_body(status, message), headers)


# --------------------------------------------------------------------------------------- $filter
class FilterError(ValueError):
    """A `$filter` (or another parameter) the API would refuse; the message says why."""


_TOKEN = re.compile(r"\s+|'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_]*|.")


def parse_filter(text: str | None) -> list[tuple[str, str]]:
    """`field eq 'value' and ...` as (item field, value) pairs; FilterError for anything else."""
    tokens = [t for t in _TOKEN.findall(text or "") if not t.isspace()]
    clauses: list[tuple[str, str]] = []
    position = 0
    while position < len(tokens):
        if clauses:
            if tokens[position] != "and":
                raise FilterError(f"expected 'and' before {tokens[position]!r}")
            position += 1
        field, operator, literal = [*tokens[position : position + 3], "", "", ""][:3]
        if operator == "(":
            raise FilterError(f"the stand-in does not evaluate functions such as {field}(...)")
        if field.lower() not in FILTER_FIELDS:
            raise FilterError(
                f"{field!r} is not a field the API filters on" if field else "a clause is missing"
            )
        if operator != "eq":
            raise FilterError(f"only 'eq' is supported, not {operator!r}")
        if len(literal) < 2 or not (literal.startswith("'") and literal.endswith("'")):
            raise FilterError(f"{field} eq needs a string literal, not {literal!r}")
        clauses.append((FILTER_FIELDS[field.lower()], literal[1:-1].replace("''", "'")))
        position += 3
    return clauses


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


# -------------------------------------------------------------------------------------- meters
def canonical_sku(size: str) -> str:
    """The API's spelling of a VM size: `STANDARD_DS3_V2` (Azure ML's) -> `Standard_DS3_v2`. A spelling
    with small letters in it is taken as given."""
    if size != size.upper():
        return size
    match = re.fullmatch(r"STANDARD_([A-Z]+)(\d+)([A-Z-]*)((?:_[A-Z0-9]+)*)", size)
    if not match:
        return size
    family, number, suffix, rest = match.groups()
    parts = [p.lower() if re.fullmatch(r"V\d+", p) else p for p in rest.split("_")]
    return f"Standard_{family}{number}{suffix.lower()}{'_'.join(parts)}"


def _series(sku: str) -> tuple[str, str]:
    """(meter name, product name): `Standard_D4s_v3` -> ("D4s v3", "Virtual Machines DSv3 Series")."""
    name = sku.split("_", 1)[1] if "_" in sku else sku
    meter = name.replace("_", " ")
    match = re.match(r"([A-Za-z]+)\d+([A-Za-z-]*)", name)
    version = re.search(r"_(v\d+)$", name, re.IGNORECASE)
    if not match:
        return meter, f"Virtual Machines {name} Series"
    family, suffix = match.group(1).upper(), match.group(2)
    suffix = suffix.upper() if suffix.lower() == "s" else suffix
    return meter, f"Virtual Machines {family}{suffix}{version.group(1) if version else ''} Series"


def _code(*parts: str) -> str:
    """A product code shaped like the real ones (`DZH318Z0BQ50`), the same for the same names."""
    return "DZH318Z0" + hashlib.sha256("|".join(parts).encode()).hexdigest().upper()[:4]


def _meter_id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "retail-prices#" + "|".join(p.lower() for p in parts)))


@dataclass(frozen=True)
class _Prices:
    """A size's hourly prices in one currency (the Reservations derive from `linux`)."""

    linux: float
    windows: float
    spot: float
    low_priority: float


@dataclass
class _Listing:
    region: str
    sku: str
    prices: dict[str, _Prices]  # by currency
    primary: bool
    effective: str


def _meters(listing: _Listing, currency: str, prices: _Prices) -> list[dict[str, Any]]:
    """Every meter the API lists for one size in one region, in the order the live endpoint lists them:
    Low Priority and Spot first, the pay-as-you-go pair, DevTest, then the Reservations."""
    meter, product = _series(listing.sku)
    windows_product = f"{product} Windows"
    region, sku = listing.region, listing.sku

    def item(kind, name, product_name, price, type_="Consumption", term=None, primary=True):
        product_id = _code(product_name)
        fields: dict[str, Any] = {"currencyCode": currency, "tierMinimumUnits": 0.0}
        if term is not None:
            fields["reservationTerm"] = term
        return {
            **fields,
            "retailPrice": round(price, 6),
            "unitPrice": round(price, 6),
            "armRegionName": region,
            "location": LOCATIONS.get(region, region),
            "effectiveStartDate": listing.effective,
            "meterId": _meter_id(region, sku, kind),
            "meterName": name,
            "productId": product_id,
            "skuId": f"{product_id}/{_code(sku, name)[-4:]}",
            "productName": product_name,
            "skuName": name,
            "serviceName": "Virtual Machines",
            "serviceId": VM_SERVICE_ID,
            "serviceFamily": "Compute",
            "unitOfMeasure": "1 Hour",
            "type": type_,
            "isPrimaryMeterRegion": primary,
            "armSkuName": sku,
        }

    low, spot = f"{meter} Low Priority", f"{meter} Spot"
    return [
        item("low-priority-windows", low, windows_product, prices.low_priority * 2.2),
        item("low-priority", low, product, prices.low_priority),
        item("spot", spot, product, prices.spot),
        item("spot-windows", spot, windows_product, prices.spot * 1.96),
        item("linux", meter, product, prices.linux, primary=listing.primary),
        item("windows", meter, windows_product, prices.windows),
        item("windows", meter, windows_product, prices.linux, "DevTestConsumption"),
        item("spot-windows", spot, windows_product, prices.spot, "DevTestConsumption"),
        item("reserved-1y", meter, product, prices.linux * 8760 * 0.62, "Reservation", term="1 Year"),
        item("reserved-3y", meter, product, prices.linux * 26280 * 0.4, "Reservation", term="3 Years"),
    ]


# ------------------------------------------------------------------------------------- stand-in
class RetailPricesStandIn:
    """Fake ``prices.azure.com``. Seed prices with :meth:`seed_price`; see the module docstring."""

    def __init__(
        self,
        traffic: Traffic | None = None,
        page_size: int = DOCUMENTED_PAGE_SIZE,
        catalogue: Iterable[tuple[str, str, float]] = DEFAULT_CATALOGUE,
        exchange_rates: dict[str, float] | None = None,
    ):
        self.traffic = traffic if traffic is not None else Traffic()
        self.page_size = page_size
        self.exchange_rates = dict(exchange_rates or EXCHANGE_RATES)
        self._catalogue = tuple(catalogue)
        self._defaults = {"page_size": page_size, "exchange_rates": dict(self.exchange_rates)}
        self._lock = threading.Lock()
        self._listings: dict[tuple[str, str], _Listing] = {}
        self._raw: list[dict[str, Any]] = []
        self._seed_catalogue()

    # ---------------------------------------------------------------- test API
    def seed_price(
        self,
        region: str,
        size: str,
        hourly: float,
        currency: str = "USD",
        *,
        windows: float | None = None,
        spot: float | None = None,
        low_priority: float | None = None,
        primary: bool = True,
        effective: str = "2024-04-01T00:00:00Z",
    ) -> None:
        """List `size` (any spelling: `STANDARD_DS3_V2` is served as `Standard_DS3_v2`) in `region` at
        `hourly` (Linux, pay-as-you-go) in `currency`, with its sibling meters (their prices derived from
        it unless given). Seeding the same size and region again in the same currency replaces the
        price; in another currency it adds that currency's exact figures. `primary`: the Linux meter's
        `isPrimaryMeterRegion` (the live endpoint lists some as False)."""
        currency = currency.upper()
        if currency not in self.exchange_rates:
            raise ValueError(f"no exchange rate for {currency}")
        prices = _Prices(
            hourly,
            windows if windows is not None else hourly * 1.92,
            spot if spot is not None else hourly * 0.196,
            low_priority if low_priority is not None else hourly * 0.198,
        )
        sku, region = canonical_sku(size), region.lower()
        with self._lock:
            listing = self._listings.setdefault((region, sku.lower()), _Listing(region, sku, {}, True, ""))
            listing.prices[currency] = prices
            listing.primary, listing.effective = primary, effective

    def remove_price(self, region: str, size: str) -> None:
        """Stop listing `size` in `region` (in every currency)."""
        with self._lock:
            self._listings.pop((region.lower(), canonical_sku(size).lower()), None)

    def add_items(self, *items: dict[str, Any]) -> None:
        """Serve these items exactly as given (after the seeded ones), in their own `currencyCode`."""
        with self._lock:
            self._raw.extend(dict(item) for item in items)

    def clear(self) -> None:
        """List nothing at all (the default catalogue included)."""
        with self._lock:
            self._listings.clear()
            self._raw.clear()

    def reset(self) -> None:
        """The default catalogue only, and `page_size` and `exchange_rates` as built."""
        self.clear()
        self.page_size = self._defaults["page_size"]
        self.exchange_rates = dict(self._defaults["exchange_rates"])
        self._seed_catalogue()

    def items(self, currency: str = "USD") -> list[dict[str, Any]]:
        """Every item listed in `currency`, unfiltered, in the order they are served."""
        currency = currency.upper()
        with self._lock:
            listings, raw = list(self._listings.values()), list(self._raw)
        served = [m for listing in listings for m in _meters(listing, currency, self._in(listing, currency))]
        return served + [i for i in raw if str(i.get("currencyCode", "USD")).upper() == currency]

    def _seed_catalogue(self) -> None:
        for region, size, hourly in self._catalogue:
            self.seed_price(region, size, hourly)

    def _in(self, listing: _Listing, currency: str) -> _Prices:
        if currency in listing.prices:
            return listing.prices[currency]
        source, prices = next(iter(listing.prices.items()))
        factor = self.exchange_rates[currency] / self.exchange_rates[source]
        return _Prices(*(round(value * factor, 6) for value in vars(prices).values()))

    # ---------------------------------------------------------------- server interface
    def service_for_host(self, host: str) -> str | None:
        return SERVICE if host == HOST else None

    def fault_response(self, service: str, status: int) -> Response:
        return _error(status)

    def handle(self, req: Request) -> Response:
        if req.path.rstrip("/") != PATH:
            return _error(404, f"no such endpoint: {req.path}")
        if req.method not in ("GET", "HEAD"):
            return _error(405, f"{req.method} is not supported; use GET")
        try:
            return self._page(req)
        except FilterError as error:
            return _error(400, str(error))

    def _page(self, req: Request) -> Response:
        version = req.query.get("api-version")
        if version is not None and version not in API_VERSIONS:
            raise FilterError(f"api-version {version!r} is not supported")
        currency = _unquoted(req.query.get("currencyCode", "USD")).upper()
        if currency not in self.exchange_rates:
            raise FilterError(f"currency {currency!r} is not supported")
        clauses = parse_filter(req.query.get("$filter"))
        fold = (lambda s: s) if version in CASE_SENSITIVE_VERSIONS else str.casefold
        for field, value in clauses:
            if field == "type" and fold(value) not in {fold(t) for t in PRICE_TYPES}:
                raise FilterError(f"{value!r} is not a price type")
        primary_only = _unquoted(req.query.get("meterRegion", "")).lower() == "primary"
        try:
            skip = int(req.query.get("$skip", "0"))
        except ValueError:
            raise FilterError(f"$skip must be a number, not {req.query.get('$skip')!r}") from None
        if skip < 0:
            raise FilterError("$skip must not be negative")
        matching = [
            item
            for item in self.items(currency)
            if all(fold(str(item.get(field, ""))) == fold(value) for field, value in clauses)
            and (item.get("isPrimaryMeterRegion", True) or not primary_only)
        ]
        size = max(1, self.page_size)
        page = matching[skip : skip + size]
        more = skip + size < len(matching)
        return Response(
            200,
            {
                "BillingCurrency": currency,
                "CustomerEntityId": "Default",
                "CustomerEntityType": "Retail",
                "Items": page,
                "NextPageLink": _next_link(req.query, skip + size) if more else None,
                "Count": len(page),
            },
        )


def _next_link(query: dict[str, str], skip: int) -> str:
    """The next page, as the API writes it: explicit port, the same parameters, `$skip` at the end."""
    params = {name: value for name, value in query.items() if name != "$skip"}
    params["$skip"] = str(skip)
    text = "&".join(f"{quote(name, safe='$')}={quote(value, safe='')}" for name, value in params.items())
    return f"https://{HOST}:443{PATH}?{text}"
