"""The ledger in Azure Table Storage over azure-data-tables: for identity-based storage connections.

The Functions convention for a storage connection without a key is `AzureWebJobsStorage__accountName`
(or `__tableServiceUri`), used with the app's identity (an azure-identity TokenCredential; the
identity needs the *Storage Table Data Contributor* role). azure-cosmosdb-table cannot sign requests
with a token, so that form uses this adapter; a connection string keeps using TableCancelLedger.

Same table, same entities (shared/table_entities.py) and the same semantics as TableCancelLedger, so a
switch between the two loses no keep and no night record:
- one partition per workspace and night; a keep's RowKey is the instance name in lower case, inserted
  atomically, merged "latest stop time wins" over the ETag that was read (If-Match), retried on a 412;
- the night's mail run and sweep (RowKey `~mail` / `~sweep`) are claimed with an atomic insert, taken
  over only once their lease has run out, and saved only over the version claimed;
- the PriceCache: VM list prices in partition `~prices`, one row per region, size and currency, replaced
  whole (upsert) on each store.
On the wire both SDKs write datetimes as Edm.DateTime (azure-data-tables with microseconds,
azure-cosmosdb-table in whole seconds; each reads the other's) and booleans as JSON booleans
(Edm.Boolean). Values read come back as plain `datetime`s in UTC, not the SDK's subclass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from .domain import Cancellation, Keep, Night, NightRecord, WorkspaceTarget
from .errors import CredentialsError, LostClaimError, ServiceError, TransientServiceError
from .outcomes import InstanceNight
from .retry import retry_after_seconds
from .table_entities import (
    PRICES_PARTITION,
    batches,
    click_entity,
    keep_entity,
    keep_from,
    night_of,
    night_record_from,
    price_entity,
    price_from,
    price_key,
    record_entity,
    row_entity,
    row_from,
    rows_filter,
)

T = TypeVar("T")
SERVICE = "Table Storage"
# Seconds: the sweep must not hang; a click has its own, shorter deadline on top.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 15
MERGE_TRIES = 5  # concurrent clicks on one instance: each retries over what the other wrote
IDENTITY_SETTINGS = ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__tableServiceUri")
KEY_SETTINGS = ("AzureWebJobsStorage",)

# azure-core logs every request and response at INFO (headers included, the token masked). Each
# failure is translated and reported by us with context, so those lines would only be noise: this
# client logs through its own logger, kept at WARNING (lower it to see the traffic).
_HTTP_LOG = logging.getLogger(__name__ + ".http")
_HTTP_LOG.setLevel(logging.WARNING)


class DataTablesLedger:
    """CancelLedger over azure-data-tables. `DataTablesLedger(table_service_uri, table, credential)`
    for identity-based storage; `DataTablesLedger.from_connection_string(...)` for a key or Azurite."""

    def __init__(self, table_service_uri: str, table: str, credential: TokenCredential):
        self._init(
            TableClient(table_service_uri.rstrip("/"), table, credential=credential, **_client_options()),
            IDENTITY_SETTINGS,
            identity=True,
        )

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str) -> DataTablesLedger:
        """A storage connection string (account key or SAS; `UseDevelopmentStorage=true` for Azurite)."""
        text = connection_string.strip()
        if text.rstrip(";").lower() == "usedevelopmentstorage=true":
            text = "UseDevelopmentStorage=true"  # the only spelling the SDK recognises
        ledger = cls.__new__(cls)
        ledger._init(
            TableClient.from_connection_string(text, table, **_client_options()), KEY_SETTINGS, identity=False
        )
        return ledger

    def _init(self, client: TableClient, settings: tuple[str, ...], identity: bool) -> None:
        self._client = client
        self._settings = settings
        self._identity = identity

    # ------------------------------------------------------------------------------------------ keeps
    def record(self, night: Night, cancellation: Cancellation) -> tuple[bool, Keep]:
        entity = keep_entity(night.key, cancellation)
        try:
            try:
                return True, keep_from(entity, self._insert(entity))
            except ResourceExistsError:
                pass
            for _ in range(MERGE_TRIES):  # latest wins: read, merge, write over what was read
                current = self.keep(night, cancellation.instance)
                if current is None:  # deleted since our insert failed: insert again
                    try:
                        return True, keep_from(entity, self._insert(entity))
                    except ResourceExistsError:
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
                    version = self._merge(merged, current.version)
                except AzureError as error:
                    if not _precondition_failed(error):
                        raise
                    continue  # another click wrote first: merge over what it wrote
                # What is stored now, as a read would show it: the first click's spelling of the name
                # and any reminder flag stay; the stop time and whose link it was are this click's.
                return False, replace(current, until=until, recipient=merged["Recipient"], version=version)
            raise TransientServiceError(SERVICE, "recording a cancellation: too many clicks at once")
        except AzureError as error:
            raise self._translate(error, "recording a cancellation") from error

    def keep(self, night: Night, instance: str) -> Keep | None:
        try:
            entity = self._client.get_entity(night.key, instance.lower())
        except ResourceNotFoundError:
            return None  # no such keep, or no table yet: nobody has ever clicked
        except AzureError as error:
            raise self._translate(error, "reading a cancellation") from error
        return keep_from(_plain(entity), entity.metadata["etag"])

    def kept_instances(self, night: Night) -> dict[str, Keep]:
        # One query; the SDK follows continuation tokens. Parameters are quoted by the SDK.
        query = "PartitionKey eq @night and RowKey lt @records"
        try:
            entities = self._client.query_entities(query, parameters={"night": night.key, "records": "~"})
            return {e["Instance"]: keep_from(_plain(e), e.metadata["etag"]) for e in entities}
        except AzureError as error:
            if _table_missing(error):
                return {}  # nobody has ever clicked: the first click creates the table
            raise self._translate(error, "reading cancellations") from error

    def mark(
        self, night: Night, keep: Keep, *, stopping: bool = False, reminded: bool = False
    ) -> Keep | None:
        flags: dict[str, Any] = {"PartitionKey": night.key, "RowKey": keep.instance.lower()}
        if stopping:
            flags["Stopping"] = True
        if reminded and keep.until is not None:
            flags["RemindedFor"] = keep.until
        try:
            version = self._merge(flags, keep.version)
        except AzureError as error:
            if _precondition_failed(error):
                return None  # a click changed it since it was read
            raise self._translate(error, "marking a cancellation") from error
        return replace(keep, stopping=keep.stopping or stopping,
                       reminded_for=keep.until if reminded else keep.reminded_for, version=version)  # fmt: skip

    # ------------------------------------------------------------------------------- night records
    def night_record(self, night: Night, kind: str) -> NightRecord | None:
        try:
            entity = self._client.get_entity(night.key, f"~{kind}")
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise self._translate(error, f"reading the {kind} record") from error
        return night_record_from(night.key, kind, _plain(entity), entity.metadata["etag"])

    def claim(self, night: Night, kind: str, now: datetime, lease: timedelta) -> NightRecord | None:
        fresh = NightRecord(night.key, kind, "running", now + lease)
        try:
            return replace(fresh, version=self._insert(record_entity(fresh)))
        except ResourceExistsError:
            pass
        except AzureError as error:
            raise self._translate(error, f"claiming the {kind} run") from error
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
        try:
            entity = self._client.get_entity(PRICES_PARTITION, price_key(region, size, currency))
        except ResourceNotFoundError:
            return None  # never cached, or no table yet
        except AzureError as error:
            raise self._translate(error, "reading a cached price") from error
        return price_from(_plain(entity))

    def cache_price(
        self, region: str, size: str, currency: str, price: float | None, fetched_at: datetime
    ) -> None:
        entity = price_entity(region, size, currency, price, fetched_at)
        try:
            self._first_write(lambda: self._client.upsert_entity(entity, mode=UpdateMode.REPLACE))
        except AzureError as error:
            raise self._translate(error, "caching a price") from error

    def record_outcomes(self, night: Night, rows: Sequence[InstanceNight]) -> None:
        entities = [row_entity(night.key, row) for row in rows]
        try:
            for chunk in batches(entities):
                operations = [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk]
                self._first_write(lambda operations=operations: self._client.submit_transaction(operations))
        except (AzureError, TableTransactionError) as error:
            raise self._translate(error, "storing the night's rows") from error

    def outcomes(self, target: WorkspaceTarget, first: date, last: date) -> dict[date, list[InstanceNight]]:
        found: dict[date, list[InstanceNight]] = {}
        try:
            for entity in self._client.query_entities(rows_filter(target.key, first, last)):
                found.setdefault(night_of(entity["PartitionKey"]), []).append(row_from(_plain(entity)))
        except AzureError as error:
            if _table_missing(error):
                return {}
            raise self._translate(error, "reading the nights' rows") from error
        return found

    # ------------------------------------------------------------------------------------ plumbing
    def _insert(self, entity: dict) -> str:
        return self._first_write(lambda: self._create(entity))

    def _first_write(self, write: Callable[[], T]) -> T:
        """`write()`, creating the table first if it does not exist yet."""
        try:
            return write()
        except ResourceNotFoundError:
            try:
                self._client.create_table()  # first write ever
            except ResourceExistsError:
                pass  # another click or tick created it a moment ago
            return write()

    def _create(self, entity: dict) -> str:
        try:
            return self._client.create_entity(entity)["etag"]
        except AttributeError as error:
            # azure-data-tables 12.7.0's create_entity decodes the response of every failure and fails
            # itself when there is none (the credential could not get a token; cf. Azure/azure-sdk-for-
            # python#27410, fixed for the other calls): the real error is the one it was handling.
            if isinstance(error.__context__, AzureError):
                raise error.__context__ from None
            raise

    def _merge(self, entity: dict, version: str) -> str:
        return self._client.update_entity(
            entity, mode=UpdateMode.MERGE, etag=version, match_condition=MatchConditions.IfNotModified
        )["etag"]

    def _update(self, record: NightRecord, version: str) -> NightRecord:
        try:
            etag = self._client.update_entity(
                record_entity(record),
                mode=UpdateMode.REPLACE,
                etag=version,
                match_condition=MatchConditions.IfNotModified,
            )["etag"]
        except AzureError as error:
            if _precondition_failed(error):
                raise LostClaimError(
                    f"another run took over the {record.kind} of {record.night_key}"
                ) from None
            raise self._translate(error, f"saving the {record.kind} record") from error
        return replace(record, version=etag)

    def _translate(self, error: AzureError, what: str) -> ServiceError:
        response = getattr(error, "response", None)
        status = getattr(error, "status_code", None) if isinstance(error, HttpResponseError) else None
        detail = _detail(error)
        if isinstance(error, ClientAuthenticationError) and response is None:
            # No answer from Table Storage at all: the credential could not get a token.
            return CredentialsError(
                SERVICE,
                f"{what}: could not get a token for the Function App's identity ({detail})",
                self._settings,
            )
        if status in (401, 403) or isinstance(error, ClientAuthenticationError):
            advice = (
                "; check the Function App's identity and its Storage Table Data Contributor role "
                "on the storage account"
                if self._identity
                else ""
            )
            return CredentialsError(
                SERVICE, f"{what}: access denied (HTTP {status}: {detail}){advice}", self._settings
            )
        if isinstance(error, ServiceRequestError | ServiceResponseError):
            return TransientServiceError(SERVICE, f"{what}: {detail}")  # refused, dropped, timed out
        if isinstance(error, HttpResponseError) and (status in (408, 429) or (status or 0) >= 500):
            headers = response.headers if response is not None else {}
            return TransientServiceError(
                SERVICE, f"{what}: HTTP {status} ({detail})", retry_after_seconds(headers.get("Retry-After"))
            )
        if status is None:
            return ServiceError(SERVICE, f"{what}: {detail}")
        return ServiceError(SERVICE, f"{what}: HTTP {status} ({detail})")


def _client_options() -> dict[str, Any]:
    return {
        "retry_total": 0,  # shared.retry.RetryPolicy is the only retry layer
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "logger": _HTTP_LOG,
    }


def _plain(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The properties with plain `datetime`s (the SDK's subclass carries the service's raw text)."""
    return {
        name: _plain_datetime(value) if isinstance(value, datetime) else value
        for name, value in entity.items()
    }


def _plain_datetime(value: datetime) -> datetime:
    utc = value.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


def _precondition_failed(error: AzureError) -> bool:
    """412: the entity changed since the version we read (If-Match)."""
    return isinstance(error, ResourceModifiedError) or (
        isinstance(error, HttpResponseError) and error.status_code == 412
    )


def _table_missing(error: AzureError) -> bool:
    return isinstance(error, ResourceNotFoundError) and getattr(error, "error_code", None) == "TableNotFound"


def _detail(error: AzureError) -> str:
    code = getattr(getattr(error, "error_code", None), "value", getattr(error, "error_code", None))
    text = str(getattr(error, "message", None) or error or "").strip()
    first = text.splitlines()[0][:300] if text else type(error).__name__
    return f"{code}: {first}" if code and str(code) not in first else first
