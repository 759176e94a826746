"""The ledger in Azure Table Storage (azure-cosmosdb-table), in the app's own storage account.

One partition per workspace and night, keyed `<subscription>|<resource group>|<workspace>|<day>`:
- a keep: RowKey = the instance name in lower case (Azure names ignore case); inserting is atomic, so
  any number of clicks leave one record, and the sweep reads the night's keeps with one query;
- the night's mail run and sweep: RowKey `~mail` / `~sweep` (after every instance name), claimed with an
  atomic insert and updated only over the ETag that was read (If-Match), so two ticks never both win.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta

from azure.common import AzureConflictHttpError, AzureException, AzureHttpError, AzureMissingResourceHttpError
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService

from .domain import Cancellation, Night, NightRecord
from .errors import CredentialsError, LostClaimError, ServiceError, TransientServiceError

SERVICE = "Table Storage"
# (connect, read) seconds: the sweep must not hang; a click has its own, shorter deadline on top.
SOCKET_TIMEOUT = (5, 15)
MAX_FIELD = 512
CHUNK = 30_000  # a string property holds at most 32K characters; longer lists continue in Name_1, ...

# The SDK logs every failed call at ERROR, an expected "already exists" on a repeated click included.
# We translate and report each failure ourselves, with context, so its own lines are only noise.
logging.getLogger("azure.cosmosdb.table.common.storageclient").setLevel(logging.CRITICAL)


class TableCancelLedger:
    def __init__(self, connection_string: str, table: str):
        self._table = table
        self._service = TableService(connection_string=connection_string, socket_timeout=SOCKET_TIMEOUT)
        self._service.retry = no_retry  # shared.retry.RetryPolicy is the only retry layer

    # ------------------------------------------------------------------------------------------ keeps
    def record(self, night: Night, cancellation: Cancellation) -> bool:
        entity = {
            "PartitionKey": night.key,
            "RowKey": cancellation.instance.lower(),
            "Workspace": cancellation.workspace,
            "Instance": cancellation.instance,
            "Day": cancellation.day.isoformat(),
            "RequestedAt": cancellation.requested_at,
            "ClientIp": cancellation.client_ip[:MAX_FIELD],
            "UserAgent": cancellation.user_agent[:MAX_FIELD],
        }
        try:
            self._insert(entity)
        except AzureConflictHttpError:
            return False
        except AzureException as error:
            raise _translate(error, "recording a cancellation") from error
        return True

    def kept_instances(self, night: Night) -> set[str]:
        # Both parts of the key are validated names and dates: no quote can reach the OData filter.
        query = f"PartitionKey eq '{night.key}' and RowKey lt '~'"
        try:
            entities = self._service.query_entities(self._table, filter=query, select="Instance")
            return {entity["Instance"] for entity in entities}
        except AzureException as error:
            if _table_missing(error):
                return set()  # nobody has ever clicked: the first click creates the table
            raise _translate(error, "reading cancellations") from error

    # ------------------------------------------------------------------------------- night records
    def night_record(self, night: Night, kind: str) -> NightRecord | None:
        try:
            return _record(night.key, kind, self._service.get_entity(self._table, night.key, f"~{kind}"))
        except AzureException as error:
            if isinstance(error, AzureMissingResourceHttpError):
                return None
            raise _translate(error, f"reading the {kind} record") from error

    def claim(self, night: Night, kind: str, now: datetime, lease: timedelta) -> NightRecord | None:
        fresh = NightRecord(night.key, kind, "running", now + lease)
        try:
            return _with_version(fresh, self._insert(_entity(fresh)))
        except AzureConflictHttpError:
            pass
        except AzureException as error:
            raise _translate(error, f"claiming the {kind} run") from error
        current = self.night_record(night, kind)
        if current is None or current.finished or (current.state == "running" and current.lease_until > now):
            return None  # done, or another tick is on it
        taken = NightRecord(
            night.key, kind, "running", now + lease, current.done, current.kept, current.failures
        )
        try:
            return self._update(taken, current.version)
        except LostClaimError:
            return None  # another tick took it over first

    def save(self, record: NightRecord) -> NightRecord:
        return self._update(record, record.version)

    # ------------------------------------------------------------------------------------ plumbing
    def _insert(self, entity: dict) -> str:
        try:
            return self._service.insert_entity(self._table, entity)
        except AzureMissingResourceHttpError:
            self._service.create_table(self._table, fail_on_exist=False)  # first write ever
            return self._service.insert_entity(self._table, entity)

    def _update(self, record: NightRecord, version: str) -> NightRecord:
        try:
            return _with_version(
                record, self._service.update_entity(self._table, _entity(record), if_match=version)
            )
        except AzureHttpError as error:
            if error.status_code == 412:
                raise LostClaimError(
                    f"another run took over the {record.kind} of {record.night_key}"
                ) from None
            raise _translate(error, f"saving the {record.kind} record") from error
        except AzureException as error:
            raise _translate(error, f"saving the {record.kind} record") from error


def _entity(record: NightRecord) -> dict:
    entity = {"PartitionKey": record.night_key, "RowKey": f"~{record.kind}", "State": record.state}
    entity["LeaseUntil"] = record.lease_until
    entity.update(_chunked("Done", record.done))
    entity.update(_chunked("Failures", record.failures))
    if record.kept is not None:
        entity.update(_chunked("Kept", record.kept))
    return entity


def _record(key: str, kind: str, entity) -> NightRecord:
    return NightRecord(
        key, kind, entity["State"], entity["LeaseUntil"], _joined(entity, "Done"),
        _joined(entity, "Kept") if "Kept" in entity else None, _joined(entity, "Failures"), entity.etag,
    )  # fmt: skip


def _with_version(record: NightRecord, etag: str) -> NightRecord:
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
