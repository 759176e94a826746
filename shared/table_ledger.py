"""The ledger in Azure Table Storage (azure-cosmosdb-table), in the app's own storage account.

One partition per workspace and night, keyed `<subscription>|<resource group>|<workspace>|<day>`:
- a keep: RowKey = the instance name in lower case (Azure names ignore case); inserting is atomic, so
  any number of clicks leave one record, and the sweep reads the night's keeps with one query;
- the night's mail run and sweep: RowKey `~mail` / `~sweep` (after every instance name), claimed with an
  atomic insert and updated only over the ETag that was read (If-Match), so two ticks never both win.
It is also the PriceCache: VM list prices in partition `~prices`, one row per region, size and currency,
replaced whole on each store (shared/table_entities.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from azure.common import AzureConflictHttpError, AzureException, AzureHttpError, AzureMissingResourceHttpError
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService

from .domain import Cancellation, Keep, Night, NightRecord, WorkspaceTarget
from .errors import CredentialsError, LostClaimError, ServiceError, TransientServiceError
from .fanout import run_bounded
from .outcomes import InstanceNight
from .table_entities import (
    PRICES_PARTITION,
    click_entity,
    keep_from,
    night_of,
    price_entity,
    price_from,
    price_key,
    record_entity,
    record_from,
    row_entity,
    row_from,
    rows_filter,
    with_version,
)

SERVICE = "Table Storage"
# (connect, read) seconds: the sweep must not hang; a click has its own, shorter deadline on top.
SOCKET_TIMEOUT = (5, 15)
MERGE_TRIES = 5  # concurrent clicks on one instance: each retries over what the other wrote

# The SDK logs every failed call at ERROR, an expected "already exists" on a repeated click included.
# We translate and report each failure ourselves, with context, so its own lines are only noise.
logging.getLogger("azure.cosmosdb.table.common.storageclient").setLevel(logging.CRITICAL)


ROW_WRITERS, ROW_BUDGET = 32, 60.0  # parallel upserts of a night's report rows, and their time budget


class TableCancelLedger:
    def __init__(self, connection_string: str, table: str):
        self._table = table
        self._service = TableService(connection_string=connection_string, socket_timeout=SOCKET_TIMEOUT)
        self._service.retry = no_retry  # shared.retry.RetryPolicy is the only retry layer

    # ------------------------------------------------------------------------------------------ keeps
    def record(self, night: Night, cancellation: Cancellation) -> tuple[bool, Keep]:
        entity = {
            "PartitionKey": night.key,
            "RowKey": cancellation.instance.lower(),
            "Workspace": cancellation.workspace,
            "Instance": cancellation.instance,
            "Day": cancellation.day.isoformat(),
            **click_entity(cancellation),
        }
        try:
            try:
                return True, keep_from(entity, self._insert(entity))
            except AzureConflictHttpError:
                pass
            for _ in range(MERGE_TRIES):  # latest wins: read, merge, write over what was read
                current = self.keep(night, cancellation.instance)
                if current is None:  # deleted since our insert failed: insert again
                    try:
                        return True, keep_from(entity, self._insert(entity))
                    except AzureConflictHttpError:
                        continue
                until = current.later(cancellation.until)
                if current.stopping or until == current.until:
                    return False, current
                merged = {
                    **click_entity(replace(cancellation, until=until)),
                    "PartitionKey": night.key,
                    "RowKey": entity["RowKey"],
                }
                try:
                    return False, keep_from({**entity, **merged}, self._merge(merged, current.version))
                except AzureHttpError as error:
                    if error.status_code != 412:
                        raise
            raise TransientServiceError(SERVICE, "recording a cancellation: too many clicks at once")
        except AzureException as error:
            raise _translate(error, "recording a cancellation") from error

    def keep(self, night: Night, instance: str) -> Keep | None:
        try:
            entity = self._service.get_entity(self._table, night.key, instance.lower())
        except AzureMissingResourceHttpError:
            return None
        except AzureException as error:
            raise _translate(error, "reading a cancellation") from error
        return keep_from(entity, entity.etag)

    def kept_instances(self, night: Night) -> dict[str, Keep]:
        # Both parts of the key are validated names and dates: no quote can reach the OData filter.
        query = f"PartitionKey eq '{night.key}' and RowKey lt '~'"
        try:
            entities = self._service.query_entities(self._table, filter=query)
            return {entity["Instance"]: keep_from(entity, entity.etag) for entity in entities}
        except AzureException as error:
            if _table_missing(error):
                return {}  # nobody has ever clicked: the first click creates the table
            raise _translate(error, "reading cancellations") from error

    def mark(
        self, night: Night, keep: Keep, *, stopping: bool = False, reminded: bool = False
    ) -> Keep | None:
        flags: dict = {"PartitionKey": night.key, "RowKey": keep.instance.lower()}
        if stopping:
            flags["Stopping"] = True
        if reminded and keep.until is not None:
            flags["RemindedFor"] = keep.until
        try:
            version = self._merge(flags, keep.version)
        except AzureHttpError as error:
            if error.status_code == 412:
                return None  # a click changed it since it was read
            raise _translate(error, "marking a cancellation") from error
        except AzureException as error:
            raise _translate(error, "marking a cancellation") from error
        return replace(keep, stopping=keep.stopping or stopping,
                       reminded_for=keep.until if reminded else keep.reminded_for, version=version)  # fmt: skip

    # ------------------------------------------------------------------------------- night records
    def night_record(self, night: Night, kind: str) -> NightRecord | None:
        try:
            return record_from(night.key, kind, self._service.get_entity(self._table, night.key, f"~{kind}"))
        except AzureException as error:
            if isinstance(error, AzureMissingResourceHttpError):
                return None
            raise _translate(error, f"reading the {kind} record") from error

    def claim(self, night: Night, kind: str, now: datetime, lease: timedelta) -> NightRecord | None:
        fresh = NightRecord(night.key, kind, "running", now + lease)
        try:
            return with_version(fresh, self._insert(record_entity(fresh)))
        except AzureConflictHttpError:
            pass
        except AzureException as error:
            raise _translate(error, f"claiming the {kind} run") from error
        current = self.night_record(night, kind)
        taken = current and current.takeover(now, lease)
        if taken is None:
            return None  # done, or another tick is on it
        try:
            return self._update(taken, current.version)
        except LostClaimError:
            return None  # another tick took it over first

    def save(self, record: NightRecord) -> NightRecord:
        return self._update(record, record.version)

    # ------------------------------------------------------------------------------------ prices
    def cached_price(self, region: str, size: str, currency: str) -> tuple[float | None, datetime] | None:
        key = price_key(region, size, currency)
        try:
            entity = self._service.get_entity(self._table, PRICES_PARTITION, key)
        except AzureMissingResourceHttpError:
            return None  # never cached, or no table yet
        except AzureException as error:
            raise _translate(error, "reading a cached price") from error
        return price_from(entity)

    def cache_price(
        self, region: str, size: str, currency: str, price: float | None, fetched_at: datetime
    ) -> None:
        entity = price_entity(region, size, currency, price, fetched_at)
        try:
            try:
                self._service.insert_or_replace_entity(self._table, entity)
            except AzureMissingResourceHttpError:
                self._service.create_table(self._table, fail_on_exist=False)  # first write ever
                self._service.insert_or_replace_entity(self._table, entity)
        except AzureException as error:
            raise _translate(error, "caching a price") from error

    def record_outcomes(self, night: Night, rows: Sequence[InstanceNight]) -> None:
        # One upsert per row, a few at a time: azure-cosmosdb-table's batches are the legacy multipart
        # format, which Azurite (our test stand-in) answers with a 500; rows are idempotent anyway.
        entities = [row_entity(night.key, row) for row in rows]

        def upsert(index: int) -> None:
            try:
                self._service.insert_or_replace_entity(self._table, entities[index])
            except AzureMissingResourceHttpError:
                self._service.create_table(self._table, fail_on_exist=False)  # first write ever
                self._service.insert_or_replace_entity(self._table, entities[index])

        outcomes = run_bounded(range(len(entities)), upsert, ROW_WRITERS, ROW_BUDGET)
        failed = [error for error in outcomes.values() if isinstance(error, Exception)]
        if failed:
            error = failed[0]
            if isinstance(error, AzureException):
                raise _translate(error, "storing the night's rows") from error
            raise error

    def outcomes(self, target: WorkspaceTarget, first: date, last: date) -> dict[date, list[InstanceNight]]:
        found: dict[date, list[InstanceNight]] = {}
        try:
            for entity in self._service.query_entities(
                self._table, filter=rows_filter(target.key, first, last)
            ):
                found.setdefault(night_of(entity["PartitionKey"]), []).append(row_from(entity))
        except AzureException as error:
            if _table_missing(error):
                return {}
            raise _translate(error, "reading the nights' rows") from error
        return found

    # ------------------------------------------------------------------------------------ plumbing
    def _insert(self, entity: dict) -> str:
        try:
            return self._service.insert_entity(self._table, entity)
        except AzureMissingResourceHttpError:
            self._service.create_table(self._table, fail_on_exist=False)  # first write ever
            return self._service.insert_entity(self._table, entity)

    def _merge(self, entity: dict, version: str) -> str:
        return self._service.merge_entity(self._table, entity, if_match=version)

    def _update(self, record: NightRecord, version: str) -> NightRecord:
        try:
            return with_version(
                record, self._service.update_entity(self._table, record_entity(record), if_match=version)
            )
        except AzureHttpError as error:
            if error.status_code == 412:
                raise LostClaimError(
                    f"another run took over the {record.kind} of {record.night_key}"
                ) from None
            raise _translate(error, f"saving the {record.kind} record") from error
        except AzureException as error:
            raise _translate(error, f"saving the {record.kind} record") from error


def _table_missing(error: AzureException) -> bool:
    return (
        isinstance(error, AzureMissingResourceHttpError)
        and getattr(error, "error_code", None) == "TableNotFound"
    )


def _translate(error: AzureException, what: str) -> ServiceError:
    status = getattr(error, "status_code", None)
    detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    if status in (401, 403):
        return CredentialsError(SERVICE, f"{what}: access denied ({detail})", ("AzureWebJobsStorage",))
    if status is None or status == 408 or status == 429 or status >= 500:
        return TransientServiceError(SERVICE, f"{what}: {detail}")
    return ServiceError(SERVICE, f"{what}: HTTP {status} ({detail})")
