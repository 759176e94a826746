"""Which adapter and which identity the settings choose; the stop budget from host.json."""

import json

import pytest

from shared import host_config
from shared.credentials import ServicePrincipal, azure_credential
from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.fakes import environ

IDENTITY_BASED = {"AzureWebJobsStorage": None, "AzureWebJobsStorage__accountName": "mlshutdownstore"}
ACS = {"SENDGRID_API_KEY": None, "acs_endpoint": "https://acs-mail.communication.azure.com"}


def problems(**overrides) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(environ(**overrides))
    return caught.value.problems


def test_the_defaults_are_the_sdks_the_app_was_built_on():
    adapters = Settings.from_environ(environ()).adapters
    assert (
        adapters.compute_api == "azureml-core"
        and adapters.table_service_uri is None
        and not adapters.uses_acs
    )


def test_identity_based_storage_and_acs_replace_the_connection_string_and_the_sendgrid_key():
    settings = Settings.from_environ(environ(compute_api="ARM", **IDENTITY_BASED, **ACS))
    assert settings.storage_connection_string is None and settings.sendgrid_api_key is None
    assert settings.adapters.compute_api == "arm"
    assert settings.adapters.table_service_uri == "https://mlshutdownstore.table.core.windows.net"
    assert settings.adapters.acs_endpoint == "https://acs-mail.communication.azure.com"
    uri = Settings.from_environ(
        environ(AzureWebJobsStorage=None, AzureWebJobsStorage__tableServiceUri="https://t.example.net/")
    )
    assert uri.adapters.table_service_uri == "https://t.example.net"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"compute_api": "sdk-v2"}, "compute_api must be one of azureml-core, arm"),
        ({"managed_identity_client_id": "not-a-guid"}, "managed_identity_client_id"),
        ({"AzureWebJobsStorage": None, "AzureWebJobsStorage__accountName": "Bad_Name"}, "AzureWebJobsStorage__accountName"),
        ({"acs_endpoint": "http://acs.example.net"}, "acs_endpoint must be an https:// URL"),
        ({"acs_connection_string": "endpoint=https://a;nokey"}, "acs_connection_string is not a Communication"),
        ({"acs_endpoint": "https://acs.example.net"}, "SENDGRID_API_KEY and acs_endpoint/acs_connection_string are both set"),
        ({"AzureWebJobsStorage": None}, "AzureWebJobsStorage is required but missing (or AzureWebJobsStorage__accountName"),
        ({"SENDGRID_API_KEY": None}, "SENDGRID_API_KEY is required but missing (or acs_endpoint"),
    ],
)  # fmt: skip
def test_every_bad_choice_is_one_problem_naming_it(overrides, named):
    (problem,) = problems(**overrides)
    assert problem.startswith(named)


def test_the_acs_access_key_is_a_secret_and_never_echoed():
    key = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRlc3Rz"
    settings = Settings.from_environ(
        environ(
            SENDGRID_API_KEY=None,
            acs_connection_string=f"endpoint=https://a.communication.azure.com/;accesskey={key}",
        )
    )
    assert key in settings.secrets() and key not in repr(settings)


def test_the_credential_is_the_service_principal_then_the_managed_identity_then_the_developer():
    principal = ServicePrincipal(
        "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000", "s"
    )
    assert type(azure_credential(principal, None, True)).__name__ == "ClientSecretCredential"
    assert type(azure_credential(None, None, True)).__name__ == "ManagedIdentityCredential"
    assigned = azure_credential(None, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", True)
    assert type(assigned).__name__ == "ManagedIdentityCredential"
    assert type(azure_credential(None, None, False)).__name__ == "DefaultAzureCredential"


@pytest.mark.parametrize(
    ("timeout", "budget"),
    [
        ("00:10:00", 480.0),
        ("00:05:00", 180.0),
        ("00:30:00", 1680.0),
        ("-1", 1680.0),
        (None, 180.0),
        ("00:01:00", 60.0),
    ],
)
def test_the_stop_budget_is_what_functiontimeout_leaves(tmp_path, timeout, budget):
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"version": "2.0", **({"functionTimeout": timeout} if timeout else {})}))
    assert host_config.stop_budget(host) == budget


def test_the_deployed_host_json_gives_the_sweep_eight_minutes():
    assert host_config.stop_budget() == 480.0


MODERN = {
    "compute_api": "arm",
    "AzureWebJobsStorage": "",
    "AzureWebJobsStorage__accountName": "mlshutdownstore",
    "SENDGRID_API_KEY": "",
    "acs_endpoint": "https://acs-mail.communication.azure.com",
    "service_principal_id": "",
    "service_principal_password": "",
    "tenant_id": "",
    "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token",
    "IDENTITY_HEADER": "h",
}


def test_a_deployment_on_the_modern_adapters_never_imports_the_old_sdks():
    """Build every adapter the way a run does, in a fresh process, and list the SDKs it imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys\n"
        "from shared import app\n"
        "from shared.adapters import AdapterFactory\n"
        "from shared.settings import load_settings\n"
        "the_app = app.bootstrap()\n"
        "factory = AdapterFactory(load_settings())  # what a run of many workspaces builds besides\n"
        "more = [factory.workspace('9d8c7b6a-0000-4000-8000-000000000002', 'rg-2', 'ws-2'), factory.directory()]\n"
        "built = [type(a).__name__ for a in (the_app.workspace, *more, the_app.ledger, the_app.mailer)]\n"
        "old = [m for m in ('azureml', 'azure.cosmosdb', 'sendgrid') if any(n == m or n.startswith(m + '.') for n in sys.modules)]\n"
        "print(built, old)\n"
    )
    env = {
        **os.environ,
        **environ(**{k: v for k, v in MODERN.items() if v}),
        **{k: "" for k, v in MODERN.items() if not v},
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == (
        "['ArmWorkspace', 'ArmWorkspace', 'ArmWorkspaceDirectory', 'DataTablesLedger', 'AcsMailer'] []"
    )


def test_every_workspace_of_a_run_and_the_listing_share_one_arm_client():
    """compute_api=arm: one client, so one sign-in, one connection pool and one write bucket per
    subscription for the whole run (the wire tests count the sign-ins: test_workspace_directory.py)."""
    from shared.adapters import AdapterFactory

    factory = AdapterFactory(Settings.from_environ(environ(compute_api="arm")))
    sub, other = "9d8c7b6a-0000-4000-8000-000000000001", "9d8c7b6a-0000-4000-8000-000000000002"
    one, two, three = (
        factory.workspace(*where)
        for where in ((sub, "rg", "ws-1"), (sub, "rg-2", "ws-1"), (other, "rg", "ws"))
    )
    directory = factory.directory()
    clients = {id(w._client) for w in (one, two, three)} | {id(directory._client)}
    assert len(clients) == 1
    assert one._bucket is two._bucket is one._client.bucket(sub) and three._bucket is not one._bucket
    assert (one.label, two.label) == ("workspace rg/ws-1", "workspace rg-2/ws-1")
