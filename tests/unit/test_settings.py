import json
from datetime import timedelta
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.fakes import SINGLE_WORKSPACE_OFF, environ

SUB = "00000000-1111-2222-3333-444444444444"


def problems(**overrides) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(environ(**overrides))
    return caught.value.problems


def test_valid_settings_are_parsed_with_defaults():
    settings = Settings.from_environ(environ())
    assert settings.target().name == "ml-ws" and settings.target().resource_group == "ml-rg"
    assert settings.target().instances.every_instance
    assert settings.to_emails == ("ml-team@contoso.com",)
    assert (settings.from_email, settings.from_name) == ("noreply@contoso.com", "Auto-shutdown")
    assert str(settings.time_zone) == "Europe/Berlin"
    assert settings.cancel_table == "cishutdown"
    assert (settings.dry_run, settings.notify_instance_owner, settings.max_parallel) == (False, False, 16)
    assert settings.uses_service_principal


def test_instance_list_accepts_one_name_or_a_comma_separated_list_with_spaces():
    assert Settings.from_environ(environ(aml_compute_instance="ci-one")).target().instances.names == (
        "ci-one",
    )
    listed = Settings.from_environ(environ(aml_compute_instance=" ci-a , ci-b,ci-a ")).target().instances
    assert listed.names == ("ci-a", "ci-b") and not listed.every_instance


@pytest.mark.parametrize("value", ["ci-a,,ci-b", "ci-a;ci-b", "*,ci-a", "ci a", "x", "-ci", "ci_a"])
def test_instance_list_syntax_errors_name_the_setting(value):
    (problem,) = problems(aml_compute_instance=value)
    assert problem.startswith("aml_compute_instance ")


def test_every_problem_is_reported_at_once():
    found = problems(
        subscription_id=None,
        aml_workspace=None,
        cancel_link_secret="short",
        time_zone="Mars/Olympus",
        to_emails="ok@contoso.com, not-an-address",
        from_email="nobody",
        shutdown_time="8pm",
        shutdown_days="weekdays",
        dry_run="maybe",
        max_parallel="0",
        func_cancel_shutdown="http://example.com/api/CancelShutDown",
        FUNCTIONS_WORKER_RUNTIME="node",
        cancel_table="1-bad",
    )
    named = {problem.split()[0] for problem in found}
    assert named == {
        "subscription_id", "aml_workspace", "cancel_link_secret", "time_zone", "to_emails", "from_email",
        "shutdown_time", "shutdown_days", "dry_run", "max_parallel", "func_cancel_shutdown",
        "FUNCTIONS_WORKER_RUNTIME", "cancel_table",
    }  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["AzureWebJobsStorage", "subscription_id", "resource_group", "aml_workspace", "aml_compute_instance",
     "SENDGRID_API_KEY", "func_cancel_shutdown", "from_email", "cancel_link_secret"],
)  # fmt: skip
def test_each_required_setting_is_named_when_missing(name):
    assert any(p.startswith(f"{name} is required but missing") for p in problems(**{name: None}))


def test_problems_never_echo_secrets():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(
            environ(cancel_link_secret="tooshort-secret", func_cancel_shutdown="ftp://h/x?code=fkey-123")
        )
    error = str(caught.value)
    assert "tooshort-secret" not in error and "fkey-123" not in error
    assert "at least 32 characters" in error


def test_secrets_are_not_in_repr():
    text = repr(Settings.from_environ(environ()))
    for secret in (
        "sp-password-not-for-logs",
        "SG.test-key-not-for-logs",
        "function-key-not-for-logs",
        "x" * 40,
    ):
        assert secret not in text


def test_service_principal_needs_both_halves_and_a_tenant():
    assert any("must be set together" in p for p in problems(service_principal_password=None))
    assert "tenant_id is required when a service principal is used" in problems(tenant_id=None)


def test_managed_identity_is_used_without_service_principal_settings():
    settings = Settings.from_environ(
        environ(service_principal_id=None, service_principal_password=None, tenant_id=None)
    )
    assert not settings.uses_service_principal


def test_to_emails_may_be_empty_only_when_owners_are_notified():
    assert "to_emails is required unless notify_instance_owner is true" in problems(to_emails=None)
    settings = Settings.from_environ(environ(to_emails=None, notify_instance_owner="TRUE"))
    assert settings.to_emails == () and settings.notify_instance_owner


def test_to_emails_accepts_commas_and_semicolons():
    settings = Settings.from_environ(environ(to_emails="a@contoso.com; b@contoso.com,a@contoso.com"))
    assert settings.to_emails == ("a@contoso.com", "b@contoso.com")


def test_cancel_url_must_be_https_except_on_localhost():
    assert Settings.from_environ(environ(func_cancel_shutdown="http://localhost:7071/api/CancelShutDown"))
    assert any(p.startswith("func_cancel_shutdown") for p in problems(func_cancel_shutdown="http://x.net/a"))


def test_subject_must_be_one_line_and_defaults_when_empty():
    assert any(p.startswith("subject") for p in problems(subject="a\r\nBcc: x@evil.com"))
    assert Settings.from_environ(environ(subject="")).subject == "Azure ML compute instances stop tonight"


@pytest.mark.parametrize("value", ["Mars/Olympus", "Europe", "x" * 300])
def test_a_bad_platform_tz_is_a_configuration_error_naming_it(value):
    (problem,) = problems(TZ=value)
    assert problem.startswith("TZ is not an IANA time zone name")


def test_the_calendar_settings_have_documented_defaults():
    settings = Settings.from_environ(environ(shutdown_time=None, warning_minutes=None, time_zone=None))
    assert (str(settings.time_zone), settings.shutdown_time.isoformat()) == ("UTC", "20:00:00")
    assert settings.shutdown_days == frozenset(range(7))
    assert (settings.warning_minutes, settings.catch_up_minutes) == (60, 120)
    assert (settings.skip_dates, settings.holidays, settings.opt_out_tag) == ((), (), "auto-shutdown")


def test_the_calendar_settings_are_parsed():
    settings = Settings.from_environ(
        environ(
            shutdown_time="19:30", shutdown_days="Mon-Fri", warning_minutes="45", catch_up_minutes="0",
            skip_dates="2026-12-24..2027-01-01", holidays="de-by, US-CA", opt_out_tag="keep-alive",
        )
    )  # fmt: skip
    assert settings.shutdown_time.isoformat() == "19:30:00" and settings.shutdown_days == frozenset(range(5))
    assert (settings.warning_minutes, settings.catch_up_minutes, settings.opt_out_tag) == (
        45,
        0,
        "keep-alive",
    )
    assert settings.holidays == (("DE", "BY"), ("US", "CA"))
    assert settings.target().opt_out_tag == "keep-alive"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shutdown_time", "24:00"), ("shutdown_time", "20"), ("shutdown_time", "20:00:00"),
        ("shutdown_time", "8pm"), ("shutdown_time", "20:60"),
        ("shutdown_days", "Monday-Friday"), ("shutdown_days", "1-5"), ("shutdown_days", "Mon-Fri-Sat"),
        ("warning_minutes", "4"), ("warning_minutes", "721"), ("warning_minutes", "1h"),
        ("catch_up_minutes", "-1"), ("catch_up_minutes", "721"),
        ("skip_dates", "2026-12-24..2026-12-01"), ("skip_dates", "24.12.2026"), ("skip_dates", "2026-02-30"),
        ("holidays", "XX"), ("holidays", "DE-ZZ"), ("holidays", "Germany"),
        ("opt_out_tag", "a/b"), ("opt_out_tag", "x" * 513),
        ("time_zone", "Berlin"),
    ],
)  # fmt: skip
def test_every_malformed_calendar_setting_is_one_problem_naming_it(name, value):
    (problem,) = problems(**{name: value})
    assert problem.startswith(f"{name} ")


@pytest.mark.parametrize("retired", ["mail_schedule", "shutdown_schedule"])
def test_the_retired_schedules_say_what_to_set_instead(retired):
    (problem,) = problems(**{retired: "0 0 19 * * 1-5"})
    instead = {"mail_schedule": "warning_minutes", "shutdown_schedule": "shutdown_time, shutdown_days"}[
        retired
    ]
    assert problem.startswith(f"{retired} is no longer used") and instead in problem


def test_secrets_to_mask_include_the_function_key_and_the_storage_key():
    settings = Settings.from_environ(
        environ(AzureWebJobsStorage="DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5;")
    )
    assert {"function-key-not-for-logs", "c2VjcmV0a2V5", "SG.test-key-not-for-logs"} <= set(
        settings.secrets()
    )


def test_only_the_function_key_and_credential_like_query_values_are_secrets():
    url = "https://app.example.net/api/CancelShutDown?code=fkey-abcdef&clientId=default&lang=en"
    secrets = Settings.from_environ(environ(func_cancel_shutdown=url)).secrets()
    assert "fkey-abcdef" in secrets
    assert "default" not in secrets and "en" not in secrets


def test_the_example_settings_file_copied_unchanged_is_refused_naming_each_placeholder():
    example = json.loads((Path(__file__).parents[2] / "local.settings.json.example").read_text())["Values"]
    named = {problem.split()[0] for problem in problems(**example) if "placeholder" in problem}
    assert {
        "tenant_id", "subscription_id", "service_principal_id", "service_principal_password",
        "resource_group", "aml_workspace", "SENDGRID_API_KEY", "cancel_link_secret",
    } <= named  # fmt: skip


@pytest.mark.parametrize(
    "value", ["<at least 32 random characters, e.g. python -c ...>", "prefix-<secret>-" + "x" * 40]
)
def test_a_placeholder_secret_is_refused_however_long(value):
    (problem,) = problems(cancel_link_secret=value)
    assert problem.startswith("cancel_link_secret still holds a placeholder") and value not in problem


def test_an_address_in_angle_brackets_is_not_a_placeholder():
    settings = Settings.from_environ(environ(from_email="Ops team <ops@contoso.com>"))
    assert settings.from_email == "ops@contoso.com"


def test_instance_names_differing_only_in_case_are_one_instance():
    assert Settings.from_environ(
        environ(aml_compute_instance="CI-A, ci-a,ci-b")
    ).target().instances.names == (
        "CI-A",
        "ci-b",
    )


def test_minimum_notice_minutes_defaults_to_30_and_is_read_per_entry():
    assert Settings.from_environ(environ()).calendar_rules().minimum_notice == timedelta(minutes=30)
    settings = Settings.from_environ(environ(minimum_notice_minutes="0"))
    assert settings.minimum_notice_minutes == 0 and settings.calendar_rules().minimum_notice == timedelta(0)
    entries = json.dumps([
        {"subscription_id": SUB, "resource_group": "rg-a", "workspace": "ws-a", "minimum_notice_minutes": 45,
         "warning_minutes": 60},
        {"subscription_id": SUB, "resource_group": "rg-b", "workspace": "ws-b"},
    ])  # fmt: skip
    settings = Settings.from_environ(environ(**SINGLE_WORKSPACE_OFF, aml_workspaces=entries))
    a, b = (settings.calendar_rules(entry).minimum_notice for entry in settings.workspaces)
    assert (a, b) == (timedelta(minutes=45), timedelta(minutes=30))


@pytest.mark.parametrize("value", ["-1", "241", "half an hour", "1.5"])
def test_a_malformed_minimum_notice_is_one_problem_naming_it(value):
    (problem,) = problems(minimum_notice_minutes=value)
    assert problem.startswith("minimum_notice_minutes ")


def test_a_warning_shorter_than_the_minimum_notice_is_refused_naming_both():
    (problem,) = problems(warning_minutes="15", minimum_notice_minutes="30")
    assert "warning_minutes (15) is shorter than minimum_notice_minutes (30)" in problem
    entries = json.dumps([{"subscription_id": SUB, "resource_group": "rg-a", "workspace": "ws-a",
                           "warning_minutes": 20}])  # fmt: skip
    (problem,) = problems(**SINGLE_WORKSPACE_OFF, aml_workspaces=entries, warning_minutes="60")
    assert (
        "warning_minutes (20) is shorter than minimum_notice_minutes (30)" in problem
        and "rg-a/ws-a" in problem
    )


def test_a_catch_up_window_too_long_for_a_late_notice_is_refused():
    (problem,) = problems(catch_up_minutes="400")
    assert "twice catch_up_minutes (400) plus minimum_notice_minutes (30) must not exceed 720" in problem


@pytest.mark.parametrize("name", ["tenant_id", "service_principal_id"])
def test_a_sign_in_placeholder_says_to_replace_it_or_remove_it_for_the_managed_identity(name):
    found = problems(**{name: "00000000-0000-0000-0000-000000000000"})
    (problem,) = [p for p in found if p.startswith(f"{name} ")]
    assert "replace it with the real value" in problem and "or remove it to sign in with" in problem
    assert "az login" in problem
