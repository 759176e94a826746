"""The template rendered for a parameter file, with the platform's answers stood in.

reference() of a resource answers what Azure would (the storage account's endpoints, the site's host
name and identity, Application Insights' connection string, a user-assigned identity's ids), listKeys()
a stand-in key, and Key Vault references in App Settings resolve to the value of the secret the template
itself writes into the vault, the way App Service resolves them for the app.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.infra.arm import Deployment, Template, Unresolvable, stand_in_guid

ROOT = Path(__file__).parents[2]
TEMPLATE_PATH = ROOT / "infra" / "azuredeploy.json"
EXAMPLE_PARAMETERS_PATH = ROOT / "infra" / "azuredeploy.parameters.example.json"

STAND_IN_ACCOUNT_KEY = "c3RhbmQtaW4tc3RvcmFnZS1hY2NvdW50LWtleQ=="
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=https://([^/]+)/secrets/([^/]+)/?\)$")

# What the README's Settings table lists but the template deliberately does not set; the template's own
# metadata says why (tests/infra/test_template_settings.py holds the two together).
NOT_SET_BY_THE_TEMPLATE = {
    "AzureWebJobsStorage",
    "tenant_id",
    "service_principal_id",
    "service_principal_password",
    "acs_connection_string",
    "TZ",
}

# Settings the template sets for the platform rather than for the app.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
}

# What the platform adds to the environment of every Function App with a managed identity.
PLATFORM_ENVIRONMENT = {
    "IDENTITY_ENDPOINT": "http://127.0.0.1:41741/msi/token",
    "IDENTITY_HEADER": "stand-in-identity-header",
}


def load_template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text())


def example_parameters() -> dict[str, Any]:
    document = json.loads(EXAMPLE_PARAMETERS_PATH.read_text())
    return {name: entry["value"] for name, entry in document["parameters"].items()}


def stand_in_secrets() -> dict[str, str]:
    """Values for the secure parameters, which the example file leaves to the command line."""
    return {
        "cancel_link_secret": "stand-in-link-secret-" + "0123456789abcdef" * 3,
        "cancelFunctionKey": "stand-in-function-key/with+chars=",
        "SENDGRID_API_KEY": "SG.stand-in.sendgrid-api-key",
    }


def _stand_in_reference(resource_id: str, api_version: str | None, full: bool) -> Any:
    match = re.search(r"/providers/([^/]+/[^/]+)/([^/]+)$", resource_id)
    if not match:
        raise Unresolvable(f"reference() of {resource_id}")
    resource_type, name = match[1].lower(), match[2]
    if resource_type == "microsoft.storage/storageaccounts":
        properties = {
            "primaryEndpoints": {
                kind: f"https://{name}.{kind}.core.windows.net/"
                for kind in ("blob", "queue", "table", "file")
            }
        }
    elif resource_type == "microsoft.web/sites":
        properties = {"defaultHostName": f"{name}.azurewebsites.net"}
    elif resource_type == "microsoft.insights/components":
        key = stand_in_guid("instrumentation key", name)
        properties = {
            "ConnectionString": f"InstrumentationKey={key};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
        }
    elif resource_type == "microsoft.managedidentity/userassignedidentities":
        properties = {
            "clientId": stand_in_guid("client id", resource_id.lower()),
            "principalId": stand_in_guid("principal id", resource_id.lower()),
        }
    else:
        raise Unresolvable(f"no stand-in for reference() of a {match[1]}")
    if not full:
        return properties
    identity = {"principalId": stand_in_guid("principal id", resource_id.lower())}
    return {"properties": properties, "identity": identity, **properties}


def _stand_in_list_keys(resource_id: str, api_version: str) -> Any:
    if "/Microsoft.Storage/storageAccounts/" not in resource_id:
        raise Unresolvable(f"no stand-in for listKeys() of {resource_id}")
    return {"keys": [{"keyName": "key1", "value": STAND_IN_ACCOUNT_KEY, "permissions": "FULL"}]}


def render(values: Mapping[str, Any] | None = None, **overrides: Any) -> Template:
    """The template with the example parameter file (or `values`), the stand-in secrets and overrides."""
    base = example_parameters() if values is None else dict(values)
    chosen = {**stand_in_secrets(), **base, **overrides}
    deployment = Deployment(reference=_stand_in_reference, list_keys=_stand_in_list_keys)
    return Template(load_template(), chosen, deployment)


def app_settings(template: Template) -> dict[str, str]:
    """The App Settings as written by the template (Key Vault references unresolved)."""
    (config,) = [r for r in template.resources() if r.type == "Microsoft.Web/sites/config"]
    assert config.name.endswith("/appsettings")
    settings = config.properties
    assert all(isinstance(v, str) for v in settings.values()), settings
    return settings


def vault_secrets(template: Template) -> dict[tuple[str, str], str]:
    """(vault, secret) -> value, for every secret the template writes."""
    secrets = {}
    for resource in template.resources():
        if resource.type == "Microsoft.KeyVault/vaults/secrets":
            vault, name = resource.name.split("/")
            secrets[(vault, name)] = resource.properties["value"]
    return secrets


def resolved_environment(template: Template) -> dict[str, str]:
    """The environment the app would see: App Settings with Key Vault references resolved, plus what
    the platform adds for a managed identity."""
    secrets = vault_secrets(template)
    environment = {}
    for name, value in app_settings(template).items():
        match = KEY_VAULT_REFERENCE.match(value)
        if match:
            host, secret = match[1], match[2]
            vault = host.removesuffix(".vault.azure.net")
            if (vault, secret) not in secrets:
                raise AssertionError(
                    f"{name} refers to {host}/secrets/{secret}, which the template never writes"
                )
            value = secrets[(vault, secret)]
        environment[name] = value
    return {**environment, **PLATFORM_ENVIRONMENT}


# -- parameter sets the tests render, besides the example file ----------------------------------------

OTHER_SUBSCRIPTION = "5f0c2d9a-2222-4000-8000-000000000002"
IDENTITY_ID = (
    f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-identities"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-aml-stop"
)
WORKSPACE_ID = (
    "/subscriptions/3b1c0d7e-1111-4000-8000-000000000001/resourceGroups/rg-ml-eu"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws-research"
)
RESOURCE_GROUP_ID = "/subscriptions/3b1c0d7e-1111-4000-8000-000000000001/resourceGroups/rg-ml-us"
SUBSCRIPTION_ID = "/subscriptions/7a7a7a7a-3333-4000-8000-000000000004"


def _without_single_workspace(values: Mapping[str, Any]) -> dict[str, Any]:
    single = {"subscription_id", "resource_group", "aml_workspace", "aml_compute_instance"}
    return {k: v for k, v in values.items() if k not in single}


def variants() -> dict[str, dict[str, Any]]:
    """Parameter sets that together take every branch of the template."""
    example = example_parameters()
    return {
        "the example file (Flex Consumption, SendGrid, system-assigned identity)": example,
        "many workspaces, ACS, a user-assigned identity, Elastic Premium": {
            **_without_single_workspace(example),
            "aml_workspaces": (
                "3b1c0d7e-1111-4000-8000-000000000001/rg-ml-eu/ws-research;"
                "3b1c0d7e-1111-4000-8000-000000000001/rg-ml-us/*;"
                "7a7a7a7a-3333-4000-8000-000000000004/*"
            ),
            "amlRoleScopes": [WORKSPACE_ID, RESOURCE_GROUP_ID, SUBSCRIPTION_ID],
            "mailService": "ACS",
            "acs_endpoint": "https://acs-contoso.communication.azure.com",
            "SENDGRID_API_KEY": "",
            "userAssignedIdentityId": IDENTITY_ID,
            "planSku": "EP1",
            "compute_api": "azureml-core",
            "notify_instance_owner": True,
            "delay_options": "",
            "dry_run": False,
        },
        "a Dedicated plan with every default": {
            "alertEmail": "ops@contoso.com",
            "from_email": "noreply@contoso.com",
            "to_emails": "ml-team@contoso.com",
            "subscription_id": "3b1c0d7e-1111-4000-8000-000000000001",
            "resource_group": "rg-ml-eu",
            "aml_workspace": "ws-research",
            "aml_compute_instance": "ci-alice, ci-bob",
            "planSku": "B1",
        },
    }
