"""The template's App Settings and the app's settings loader can never drift apart.

The template is rendered for the example parameter file (and for parameter sets that take its other
branches), its Key Vault references are resolved to the secrets it writes into the vault, the platform's
identity endpoint is added, and the result goes to `shared.settings.Settings.from_environ`, which must
accept it. The README's Settings table is the list of settings.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.settings import Settings
from tests.infra.rendering import (
    IDENTITY_ID,
    KEY_VAULT_REFERENCE,
    NOT_SET_BY_THE_TEMPLATE,
    PLATFORM_SETTINGS,
    ROOT,
    app_settings,
    example_parameters,
    load_template,
    render,
    resolved_environment,
    stand_in_secrets,
    variants,
    vault_secrets,
)

SECRET_SETTINGS = {"SENDGRID_API_KEY", "cancel_link_secret", "func_cancel_shutdown"}


def readme_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", section, flags=re.MULTILINE))


def rendered_settings() -> dict[str, dict[str, str]]:
    return {name: app_settings(render(values)) for name, values in variants().items()}


def test_the_readme_table_is_found():
    assert {
        "AzureWebJobsStorage",
        "aml_workspaces",
        "func_cancel_shutdown",
        "max_parallel",
        "TZ",
    } <= readme_settings()


def test_every_setting_of_the_readme_table_is_set_by_the_template_or_deliberately_left_out():
    set_somewhere = set().union(*rendered_settings().values())
    assert readme_settings() - NOT_SET_BY_THE_TEMPLATE - set_somewhere == set()


def test_what_is_left_out_is_in_the_readme_and_the_template_says_why():
    reasons = load_template()["metadata"]["appSettingsNotSet"]
    assert set(reasons) == NOT_SET_BY_THE_TEMPLATE
    assert readme_settings() >= NOT_SET_BY_THE_TEMPLATE
    assert all(len(why) > 20 for why in reasons.values())


def test_every_setting_the_template_writes_is_read_by_the_app_or_the_platform():
    for variant, settings in rendered_settings().items():
        assert set(settings) - readme_settings() - PLATFORM_SETTINGS == set(), variant


def test_each_app_setting_parameter_is_named_after_its_setting():
    """A parameter named like a README setting is that setting (the template never renames one)."""
    parameters = set(load_template()["parameters"])
    for variant, values in variants().items():
        settings = app_settings(render(values))
        for name in parameters & readme_settings() & set(settings):
            if name not in SECRET_SETTINGS:
                value = render(values).parameter(name)
                expected = (
                    {True: "true", False: "false"}.get(value, str(value))
                    if not isinstance(value, str)
                    else value
                )
                assert settings[name] == expected, (variant, name)


@pytest.mark.parametrize("variant", list(variants()))
def test_the_app_accepts_the_settings_the_template_renders(variant):
    template = render(variants()[variant])
    settings = Settings.from_environ(resolved_environment(template))  # raises ConfigurationError otherwise
    assert settings.adapters.in_azure
    assert settings.storage_connection_string is None  # identity-based storage, no key in the settings
    assert settings.service_principal_id is None and settings.service_principal_password is None
    assert settings.cancel_link_secret == stand_in_secrets()["cancel_link_secret"]


def test_the_example_file_gives_the_app_what_the_readme_promises():
    template = render()
    environment = resolved_environment(template)
    settings = Settings.from_environ(environment)
    app = example_parameters().get("appName") or template.parameter("appName")
    storage = template.variable("storageAccountName")

    assert settings.adapters.compute_api == "arm"
    assert settings.adapters.table_service_uri == f"https://{storage}.table.core.windows.net"
    assert settings.adapters.managed_identity_client_id is None  # system-assigned
    assert settings.sendgrid_api_key == stand_in_secrets()["SENDGRID_API_KEY"]
    assert settings.dry_run is True  # the example deploys a dry run first
    assert settings.target().name == "ws-research"
    cancel = urlsplit(settings.cancel_url)
    assert (cancel.scheme, cancel.netloc, cancel.path) == (
        "https",
        f"{app}.azurewebsites.net",
        "/api/CancelShutDown",
    )
    assert parse_qsl(cancel.query) == [("code", stand_in_secrets()["cancelFunctionKey"])]
    assert "FUNCTIONS_WORKER_RUNTIME" not in environment  # Flex: the runtime is in functionAppConfig


def test_many_workspaces_with_acs_and_a_user_assigned_identity():
    variant = variants()["many workspaces, ACS, a user-assigned identity, Elastic Premium"]
    template = render(variant)
    environment = resolved_environment(template)
    settings = Settings.from_environ(environment)
    client_id = template.deployment.reference(IDENTITY_ID, "2023-01-31", False)["clientId"]

    assert len(settings.workspaces) == 3
    assert settings.adapters.acs_endpoint == "https://acs-contoso.communication.azure.com"
    assert settings.sendgrid_api_key is None
    assert settings.adapters.managed_identity_client_id == client_id
    assert environment["AzureWebJobsStorage__credential"] == "managedidentity"
    assert environment["AzureWebJobsStorage__clientId"] == client_id
    assert (
        environment["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"ClientId={client_id};Authorization=AAD"
    )
    assert environment["FUNCTIONS_WORKER_RUNTIME"] == "python"  # not Flex: the runtime is an App Setting
    assert settings.delay_options == ()  # set but empty: keep-tonight only, as in the app
    assert not any(name == "sendgrid-api-key" for _, name in vault_secrets(template))


def test_the_template_defaults_are_the_app_defaults():
    """Leaving a parameter at its default gives the app what leaving the setting out would give it.

    The one deliberate difference is compute_api: the template defaults to arm (managed identity, a
    supported client), the app to azureml-core (what the project was specified on).
    """
    values = variants()["a Dedicated plan with every default"]
    template = render(values)
    environment = resolved_environment(template)
    defaulted = {
        name
        for name, spec in load_template()["parameters"].items()
        if "defaultValue" in spec and name not in values and name in readme_settings() and name in environment
    }
    assert {
        "time_zone",
        "shutdown_time",
        "delay_options",
        "max_parallel",
        "dry_run",
        "compute_api",
    } <= defaulted
    with_defaults = Settings.from_environ(environment)
    without = Settings.from_environ(
        {k: v for k, v in environment.items() if k not in defaulted - {"compute_api"}}
    )
    assert with_defaults == without
    app_default = Settings.from_environ({k: v for k, v in environment.items() if k != "compute_api"})
    assert (with_defaults.adapters.compute_api, app_default.adapters.compute_api) == ("arm", "azureml-core")


@pytest.mark.parametrize("variant", list(variants()))
def test_every_secret_setting_is_a_key_vault_reference_to_this_templates_vault(variant):
    template = render(variants()[variant])
    vault = template.variable("vaultName")
    for name, value in app_settings(template).items():
        match = KEY_VAULT_REFERENCE.match(value)
        if name in SECRET_SETTINGS:
            assert match, name
            assert match[1] == f"{vault}.vault.azure.net"
        else:
            assert not match, name
    assert set(vault_secrets(template)) <= {(vault, s) for s in template.variable("secretNames").values()}


def test_the_functions_runtime_setting_follows_the_plan():
    for sku, expected in {"FC1": None, "EP1": "python", "B1": "python", "P1v3": "python"}.items():
        settings = app_settings(render(planSku=sku))
        assert settings.get("FUNCTIONS_WORKER_RUNTIME") == expected, sku
        assert settings.get("FUNCTIONS_EXTENSION_VERSION") == (None if expected is None else "~4"), sku
        Settings.from_environ(resolved_environment(render(planSku=sku)))  # python or absent: both accepted


def test_a_misconfigured_deployment_is_refused_by_the_app_as_in_azure():
    """The renderer resolves values, it does not make them right: a wrong value fails as it would."""
    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="time_zone"):
        Settings.from_environ(resolved_environment(render(time_zone="Mars/Olympus_Mons")))
    with pytest.raises(ConfigurationError, match="aml_workspace"):
        Settings.from_environ(resolved_environment(render(aml_workspace="")))
