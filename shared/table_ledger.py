"""The cancel ledger in Azure Table Storage (azure-cosmosdb-table), in the app's own storage account.

One entity per workspace, night and instance: PartitionKey `<workspace>:<day>`, RowKey `<instance>`.
Inserting is atomic, so any number of clicks - however concurrent - leave exactly one record, and the
sweep reads one night's partition with a single query.
"""

from __future__ import annotations

import logging
from datetime import date

from azure.common import AzureConflictHttpError, AzureException, AzureMissingResourceHttpError
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService

from .domain import Cancellation
from .errors import CredentialsError, ServiceError, TransientServiceError

SERVICE = "Table Storage"
# (connect, read) seconds: a person is waiting for the page, and the sweep must not hang.
SOCKET_TIMEOUT = (5, 15)
MAX_FIELD = 512

# The SDK logs every failed call at ERROR, an expected "already exists" on a repeated click included.
# We translate and report each failure ourselves, with context, so its own lines are only noise.
logging.getLogger("azure.cosmosdb.table.common.storageclient").setLevel(logging.CRITICAL)


class TableCancelLedger:
    def __init__(self, connection_string: str, table: str):
        self._table = table
        self._service = TableService(connection_string=connection_string, socket_timeout=SOCKET_TIMEOUT)
        self._service.retry = no_retry  # shared.retry.RetryPolicy is the only retry layer

    def record(self, cancellation: Cancellation) -> bool:
        entity = {
            "PartitionKey": _partition(cancellation.workspace, cancellation.day),
            "RowKey": cancellation.instance,
            "Workspace": cancellation.workspace,
            "Instance": cancellation.instance,
            "Day": cancellation.day.isoformat(),
            "RequestedAt": cancellation.requested_at,
            "ClientIp": cancellation.client_ip[:MAX_FIELD],
            "UserAgent": cancellation.user_agent[:MAX_FIELD],
        }
        try:
            try:
                self._service.insert_entity(self._table, entity)
            except AzureMissingResourceHttpError:
                # First click ever: the table does not exist yet.
                self._service.create_table(self._table, fail_on_exist=False)
                self._service.insert_entity(self._table, entity)
        except AzureConflictHttpError:
            return False
        except AzureException as error:
            raise _translate(error, "recording a cancellation") from error
        return True

    def kept_instances(self, workspace: str, day: date) -> set[str]:
        query = f"PartitionKey eq '{_partition(workspace, day)}'"
        try:
            entities = self._service.query_entities(self._table, filter=query, select="RowKey")
            return {entity["RowKey"] for entity in entities}
        except AzureMissingResourceHttpError as error:
            if getattr(error, "error_code", None) == "TableNotFound":
                return set()  # nobody has ever clicked: the first click creates the table
            raise _translate(error, "reading cancellations") from error
        except AzureException as error:
            raise _translate(error, "reading cancellations") from error


def _partition(workspace: str, day: date) -> str:
    # Both parts are validated names/dates: no quote can reach the OData filter.
    return f"{workspace}:{day.isoformat()}"


def _translate(error: AzureException, what: str) -> ServiceError:
    status = getattr(error, "status_code", None)
    detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    if status in (401, 403):
        return CredentialsError(SERVICE, f"{what}: access denied ({detail})", ("AzureWebJobsStorage",))
    if status is None or status == 408 or status == 429 or status >= 500:
        return TransientServiceError(SERVICE, f"{what}: {detail}")
    return ServiceError(SERVICE, f"{what}: HTTP {status} ({detail})")
