"""Choosing an instance's hourly list price from Azure Retail Prices API items.

A compute instance is billed as the virtual machine it runs on: the Linux pay-as-you-go price of its
VM size in its region. The API lists many meters for one size (Windows, Spot, Low Priority, reservations,
DevTest): only `type` Consumption, per hour, not Windows, not Spot and not Low Priority count. Several
remaining meters (a price change) are resolved by the latest `effectiveStartDate`, preferring the
primary meter region.
"""

from __future__ import annotations

from collections.abc import Iterable


def retail_filter(region: str, size: str) -> str:
    """The OData `$filter` that asks the API for one size in one region (Linux and Windows alike: the
    API has no OS field; `hourly_price` keeps the Linux meters)."""
    return (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{_quoted(region)}' "
        f"and armSkuName eq '{_quoted(size)}' and priceType eq 'Consumption'"
    )


def hourly_price(items: Iterable[dict], region: str, size: str) -> float | None:
    """The Linux pay-as-you-go hourly price of `size` in `region`, or None if the items have none."""
    candidates = [item for item in items if _linux_consumption(item, region, size)]
    if not candidates:
        return None
    best = max(
        candidates,
        key=lambda i: (bool(i.get("isPrimaryMeterRegion", True)), str(i.get("effectiveStartDate", ""))),
    )
    price = best.get("retailPrice", best.get("unitPrice"))
    return float(price) if isinstance(price, int | float) and not isinstance(price, bool) else None


def _linux_consumption(item: dict, region: str, size: str) -> bool:
    names = " ".join(str(item.get(k, "")) for k in ("productName", "skuName", "meterName")).lower()
    return (
        str(item.get("serviceName", "")) == "Virtual Machines"
        and str(item.get("armRegionName", "")).lower() == region.lower()
        and str(item.get("armSkuName", "")).lower() == size.lower()
        and str(item.get("type", "")) == "Consumption"
        and str(item.get("unitOfMeasure", "")) == "1 Hour"
        and "windows" not in names
        and "spot" not in names
        and "low priority" not in names
    )


def _quoted(value: str) -> str:
    return value.replace("'", "''")  # OData doubles a quote inside a string literal
