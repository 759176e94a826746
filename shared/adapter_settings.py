"""Which adapter serves each external service, and how it signs in: the App Settings that choose.

- compute: `compute_api` = `azureml-core` (default: SDK v1, support ended 2026-06-30) or `arm` (plain
  REST on azure-identity);
- ledger: a storage connection string (`AzureWebJobsStorage`) keeps azure-cosmosdb-table; identity-based
  storage (`AzureWebJobsStorage__accountName` or `__tableServiceUri`, the Functions convention) uses
  azure-data-tables with the app's identity;
- mail: `SENDGRID_API_KEY` (default) or Azure Communication Services Email (`acs_endpoint` with the
  app's identity, or `acs_connection_string` locally).
The identity is a service principal when its settings are given, else the managed identity (user-
assigned with `managed_identity_client_id`) in Azure, else DefaultAzureCredential locally (`az login`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import setting_rules as rules
from .setting_reader import Reader

COMPUTE_APIS = ("azureml-core", "arm")
STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


@dataclass(frozen=True)
class AdapterSettings:
    compute_api: str = "azureml-core"
    managed_identity_client_id: str | None = None
    table_service_uri: str | None = None  # identity-based storage
    acs_endpoint: str | None = None
    acs_connection_string: str | None = field(default=None, repr=False)
    in_azure: bool = False  # the platform's identity endpoint is there (IDENTITY_ENDPOINT)

    @property
    def uses_acs(self) -> bool:
        return bool(self.acs_endpoint or self.acs_connection_string)


def read_adapter_settings(reader: Reader, values: dict[str, Any]) -> AdapterSettings:
    account = reader.optional(
        "AzureWebJobsStorage__accountName", rules.matching(STORAGE_ACCOUNT, "storage account name"), None
    )
    uri = reader.optional("AzureWebJobsStorage__tableServiceUri", rules.https_url, None)
    choice = AdapterSettings(
        compute_api=reader.optional("compute_api", rules.one_of(*COMPUTE_APIS), "azureml-core"),
        managed_identity_client_id=reader.optional(
            "managed_identity_client_id",
            rules.matching(rules.GUID, "client id of a user-assigned identity"),
            None,
        ),
        table_service_uri=uri or (f"https://{account}.table.core.windows.net" if account else None),
        acs_endpoint=reader.optional("acs_endpoint", rules.https_url, None),
        acs_connection_string=reader.optional("acs_connection_string", rules.acs_connection_string, None),
        in_azure=bool(reader.optional("IDENTITY_ENDPOINT", str.strip, None)),
    )
    _check(reader, values, choice)
    return choice


def _check(reader: Reader, values: dict[str, Any], choice: AdapterSettings) -> None:
    storage_invalid = {"AzureWebJobsStorage", "AzureWebJobsStorage__accountName"} & reader.invalid
    if not values["storage_connection_string"] and not choice.table_service_uri and not storage_invalid:
        reader.problems.append(
            "AzureWebJobsStorage is required but missing (or AzureWebJobsStorage__accountName / "
            "AzureWebJobsStorage__tableServiceUri for identity-based storage)"
        )
    sendgrid = values["sendgrid_api_key"]
    if not sendgrid and not choice.uses_acs and "SENDGRID_API_KEY" not in reader.invalid:
        reader.problems.append(
            "SENDGRID_API_KEY is required but missing (or acs_endpoint for Azure Communication Services Email)"
        )
    if sendgrid and choice.uses_acs:
        reader.problems.append(
            "SENDGRID_API_KEY and acs_endpoint/acs_connection_string are both set: set the one mail service to use"
        )
    if choice.acs_endpoint and choice.acs_connection_string:
        reader.problems.append("acs_endpoint and acs_connection_string are both set: set one of them")
