"""How keeps, night records and cached prices look as Table Storage entities, both ways.

Both ledger adapters (table_ledger.py on azure-cosmosdb-table, data_tables_ledger.py on azure-data-tables)
write and read exactly these shapes, so either reads what the other wrote.

Cached VM prices (the PriceCache port) live in the same table, in their own partition `~prices` (no
night's key starts with `~`, so they never meet keeps or night records), one row per region, size and
currency: RowKey `<region>|<size>|<currency>` in lower case, with the characters Table keys may not hold
(`/ \\ # ?` and control characters) and `%` written as `%xx`. `HourlyPrice` (Edm.Double) is absent and
`Listed` false when the API lists no price; `FetchedAt` is an Edm.DateTime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from .domain import Cancellation, Keep, NightRecord
from .outcomes import InstanceNight

MAX_FIELD = 512
# A night's report rows sit in its partition after the keeps and the `~mail`/`~sweep` records
# (RowKey `~row|<instance>`), so a keeps query (`RowKey lt '~'`) never meets them.
ROW_PREFIX, ROW_END = "~row|", "~row}"
BATCH = 100  # entities per transaction, all of one partition
CHUNK = 30_000  # a string property holds at most 32K characters; longer lists continue in Name_1, ...
PRICES_PARTITION = "~prices"
# Characters a PartitionKey or RowKey may not hold, and `%`, which escapes them.
_KEY_UNSAFE = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")


def click_entity(cancellation: Cancellation) -> dict:
    """Who asked, when, from where, and until when: the latest click's, with the stop time in force."""
    return {
        "AllNight": cancellation.until is None,
        "KeepUntil": cancellation.until or datetime(1601, 1, 1, tzinfo=UTC),  # Table's minimum: unused
        "Recipient": cancellation.recipient[:MAX_FIELD],
        "RequestedAt": cancellation.requested_at,
        "ClientIp": cancellation.client_ip[:MAX_FIELD],
        "UserAgent": cancellation.user_agent[:MAX_FIELD],
    }


def keep_entity(night_key: str, cancellation: Cancellation) -> dict:
    """A new keep, as the first click on an instance stores it (RowKey: the name in lower case)."""
    return {
        "PartitionKey": night_key,
        "RowKey": cancellation.instance.lower(),
        "Workspace": cancellation.workspace,
        "Instance": cancellation.instance,
        "Day": cancellation.day.isoformat(),
        **click_entity(cancellation),
    }


def keep_from(entity, version: str) -> Keep:
    # Keeps stored before delays existed have no AllNight: they keep the instance all night.
    all_night = entity.get("AllNight", True)
    requested = entity.get("RequestedAt")
    return Keep(
        entity["Instance"], None if all_night else entity["KeepUntil"], entity.get("Recipient", ""),
        entity.get("RemindedFor"), bool(entity.get("Stopping", False)), version,
        requested if isinstance(requested, datetime) else None,
    )  # fmt: skip


def record_entity(record: NightRecord) -> dict:
    entity = {"PartitionKey": record.night_key, "RowKey": f"~{record.kind}", "State": record.state}
    entity["LeaseUntil"] = record.lease_until
    entity.update(_chunked("Done", record.done))
    entity.update(_chunked("Failures", record.failures))
    if record.kept is not None:
        entity.update(_chunked("Kept", record.kept))
    if record.noticed:
        entity.update(_chunked("Noticed", tuple(f"{at.isoformat()} {name}" for name, at in record.noticed)))
    return entity


def record_from(key: str, kind: str, entity) -> NightRecord:
    return night_record_from(key, kind, entity, entity.etag)


def night_record_from(key: str, kind: str, entity: Mapping[str, Any], version: str) -> NightRecord:
    """`record_from` for SDKs that keep the ETag beside the properties (azure-data-tables' metadata)."""
    pairs = (item.partition(" ") for item in _joined(entity, "Noticed"))  # "<ISO instant> <instance>"
    noticed = tuple((name, datetime.fromisoformat(at)) for at, _, name in pairs)
    return NightRecord(
        key, kind, entity["State"], entity["LeaseUntil"], _joined(entity, "Done"),
        _joined(entity, "Kept") if "Kept" in entity else None, _joined(entity, "Failures"), version, noticed,
    )  # fmt: skip


def with_version(record: NightRecord, etag: str) -> NightRecord:
    return replace(record, version=etag)


def _chunked(name: str, values: tuple[str, ...]) -> dict[str, str]:
    text = json.dumps(list(values))
    parts = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or ["[]"]
    return {name if n == 0 else f"{name}_{n}": part for n, part in enumerate(parts)}


def _joined(entity, name: str) -> tuple[str, ...]:
    parts, n = [entity.get(name, "[]")], 1
    while f"{name}_{n}" in entity:
        parts.append(entity[f"{name}_{n}"])
        n += 1
    return tuple(json.loads("".join(parts)))


def price_key(region: str, size: str, currency: str) -> str:
    """The RowKey of a cached price: `westeurope|standard_ds3_v2|eur`."""
    text = f"{region}|{size}|{currency}".lower()
    return _KEY_UNSAFE.sub(lambda m: f"%{ord(m.group()):02x}", text)


def price_entity(
    region: str, size: str, currency: str, price: float | None, fetched_at: datetime
) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": PRICES_PARTITION,
        "RowKey": price_key(region, size, currency),
        "Region": region,
        "Size": size,
        "Currency": currency.upper(),
        "Listed": price is not None,
        "FetchedAt": fetched_at,
    }
    if price is not None:
        entity["HourlyPrice"] = float(price)
    return entity


def price_from(entity: Mapping[str, Any]) -> tuple[float | None, datetime]:
    """(price or None, when it was fetched, in UTC) from a cached price's properties."""
    fetched_at = entity["FetchedAt"].astimezone(UTC)
    price = entity.get("HourlyPrice")
    if not entity.get("Listed", price is not None) or price is None:
        return None, fetched_at
    return float(getattr(price, "value", price)), fetched_at


def row_entity(night_key: str, row: InstanceNight) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": night_key,
        "RowKey": ROW_PREFIX + row.instance.lower(),
        "Instance": row.instance,
        "Outcome": row.outcome,
        "Size": row.size or "",
        "Region": row.region or "",
        "KeptBy": row.kept_by[:MAX_FIELD],
        "Detail": row.detail[:MAX_FIELD],
        "Hours": float(row.hours),
    }
    for name, value in (("StoppedAt", row.stopped_at), ("KeptUntil", row.kept_until)):
        if value is not None:
            entity[name] = value
    if row.saving is not None:
        entity["Saving"] = float(row.saving)
    return entity


def row_from(entity: Mapping[str, Any]) -> InstanceNight:
    def number(name: str) -> float | None:
        value = entity.get(name)
        return None if value is None else float(getattr(value, "value", value))

    def instant(name: str) -> datetime | None:
        value = entity.get(name)
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    return InstanceNight(
        entity["Instance"], entity["Outcome"], entity.get("Size") or None, entity.get("Region") or None,
        instant("StoppedAt"), instant("KeptUntil"), entity.get("KeptBy", ""), entity.get("Detail", ""),
        number("Hours") or 0.0, number("Saving"),
    )  # fmt: skip


def night_of(partition_key: str) -> date:
    """The local date a night's partition key ends with."""
    return date.fromisoformat(partition_key.rsplit("|", 1)[1])


def rows_filter(target_key: str, first: date, last: date) -> str:
    """The report rows of one workspace's nights from `first` to `last`: a range of partitions. The key
    holds validated names and dates only, so no quote reaches the OData text."""
    return (
        f"PartitionKey ge '{target_key}|{first.isoformat()}' and PartitionKey le '{target_key}|{last.isoformat()}'"
        f" and RowKey ge '{ROW_PREFIX}' and RowKey lt '{ROW_END}'"
    )


def batches(entities: list[dict]) -> list[list[dict]]:
    return [entities[i : i + BATCH] for i in range(0, len(entities), BATCH)]
