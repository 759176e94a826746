"""aml_workspaces: both forms, per-entry overrides, and every malformed entry named in one error."""

import json

import pytest

from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.fakes import SINGLE_WORKSPACE_OFF, environ, workspace_id

SUB_A = "3b1c0d7e-0000-4000-8000-00000000000a"
SUB_B = "3b1c0d7e-0000-4000-8000-00000000000b"


def parse(value: str, **overrides) -> Settings:
    return Settings.from_environ(environ(**SINGLE_WORKSPACE_OFF, aml_workspaces=value, **overrides))


def problems(value: str, **overrides) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse(value, **overrides)
    return caught.value.problems


def test_the_short_form_takes_triples_arm_ids_and_stars_separated_by_semicolons_or_newlines():
    value = (
        f"{SUB_A}/rg-one/ws-one; {workspace_id(SUB_A, 'rg-two', 'ws-two')}\n{SUB_B}/*\n\n{SUB_A}/rg-three/*"
    )
    entries = parse(value).workspaces
    assert [e.text for e in entries] == [
        f"{SUB_A}/rg-one/ws-one",
        f"{SUB_A}/rg-two/ws-two",
        f"{SUB_B}/*",
        f"{SUB_A}/rg-three/*",
    ]
    assert [e.is_pattern for e in entries] == [False, False, True, True]
    assert entries[2].resource_group is None


def test_the_json_form_overrides_the_app_wide_settings_for_its_entry():
    value = json.dumps([
        {"subscription_id": SUB_A, "resource_group": "rg-eu", "workspace": "ws-eu",
         "time_zone": "Europe/Berlin", "shutdown_time": "19:30", "shutdown_days": ["Mon", "Fri"],
         "warning_minutes": 30, "skip_dates": "2026-12-24..2026-12-26", "holidays": "DE-BY",
         "to_emails": ["eu-team@contoso.com"], "instances": ["ci-a", "ci-b"]},
        {"subscription_id": SUB_B, "workspace": "*"},
    ])  # fmt: skip
    settings = parse(value, time_zone="America/New_York", shutdown_time="21:00")
    eu, everything = settings.workspaces
    rules = settings.calendar_rules(eu)
    assert (str(rules.zone), rules.shutdown_time.isoformat(), sorted(rules.days)) == (
        "Europe/Berlin",
        "19:30:00",
        [0, 4],
    )
    assert rules.warning.total_seconds() == 1800 and rules.skip_ranges[0][0].isoformat() == "2026-12-24"
    assert rules.holiday(__import__("datetime").date(2026, 12, 8)) is None  # not a holiday in Bavaria
    assert settings.to_emails_of(eu) == ("eu-team@contoso.com",)
    assert settings.instances_of(eu).names == ("ci-a", "ci-b")
    app_wide = settings.calendar_rules(everything)
    assert (str(app_wide.zone), app_wide.shutdown_time.isoformat()) == ("America/New_York", "21:00:00")
    assert settings.instances_of(everything).every_instance
    assert settings.to_emails_of(everything) == ("ml-team@contoso.com",)


def test_every_malformed_entry_is_named_in_one_error():
    found = problems(
        json.dumps(
            [
                {"subscription_id": "not-a-guid", "resource_group": "rg", "workspace": "ws-one"},
                {
                    "subscription_id": SUB_A,
                    "resource_group": "rg",
                    "workspace": "ws-two",
                    "time_zone": "Mars/Base",
                },
                {"subscription_id": SUB_A, "workspace": "ws-three"},
                {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws-four", "colour": "blue"},
                "ws-five",
                {
                    "subscription_id": SUB_A,
                    "resource_group": "rg",
                    "workspace": "ws-six",
                    "warning_minutes": True,
                },
            ]
        ),
        cancel_link_secret="short",
    )
    entries = sorted(p.split()[2] for p in found if p.startswith("aml_workspaces entry"))
    assert entries == ["1", "2", "3", "4", "5", "6"]
    assert any("subscription id 'not-a-guid'" in p for p in found)
    assert any("time_zone is not an IANA time zone" in p for p in found)
    assert any("missing resource_group" in p for p in found)
    assert any("unknown key(s) colour" in p for p in found)
    assert any(p.startswith("cancel_link_secret") for p in found)  # the other settings too, in the same error


@pytest.mark.parametrize(
    "entry",
    [
        "ws-only",
        f"{SUB_A}/rg",
        f"{SUB_A}/rg/ws/extra",
        f"{SUB_A}/rg/x",
        "/subscriptions/nope",
        f"{SUB_A}/rg*/ws-a",
    ],
)
def test_malformed_short_entries_are_named_with_their_position(entry):
    found = problems(f"{SUB_A}/rg/ws-fine;{entry}")
    assert len(found) == 1 and found[0].startswith("aml_workspaces entry 2 (")


def test_duplicates_are_rejected_whatever_their_spelling_or_case():
    found = problems(
        f"{SUB_A}/rg/ws-one; {workspace_id(SUB_A.upper(), 'RG', 'WS-One')}; {SUB_B}/*; {SUB_B}/*"
    )
    assert found == [
        f"aml_workspaces entries 1 and 2 both name {SUB_A.upper()}/RG/WS-One: keep one",
        f"aml_workspaces entries 3 and 4 both name {SUB_B}/*: keep one",
    ]


def test_a_star_entry_and_a_named_workspace_inside_it_may_be_combined():
    entries = parse(f"{SUB_A}/*; {SUB_A}/rg/ws-special").workspaces
    assert len(entries) == 2


def test_both_forms_at_once_are_a_configuration_error():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(environ(aml_workspaces=f"{SUB_A}/rg/ws-one"))
    (problem,) = caught.value.problems
    assert problem.startswith(
        "aml_workspaces and the single-workspace settings (subscription_id, resource_group,"
    )


def test_json_that_does_not_parse_or_is_no_array_is_named():
    assert problems('[{"subscription_id": ')[0].startswith("aml_workspaces is not valid JSON")
    assert problems('{"subscription_id": "x"}')[0].startswith(
        "aml_workspaces in the JSON form must be an array"
    )
    assert problems("[]") == ["aml_workspaces names no workspace"]


def test_an_entry_without_recipients_is_named_unless_owners_are_mailed():
    value = json.dumps([
        {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws-one", "to_emails": []},
        {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws-two"},
    ])  # fmt: skip
    (problem,) = problems(value)
    assert f"entries {SUB_A}/rg/ws-one have no to_emails" in problem
    assert parse(value, notify_instance_owner="true").workspaces


def test_a_placeholder_left_from_the_example_is_refused():
    (problem,) = problems("<subscription id>/<resource group>/<workspace>")
    assert problem.startswith("aml_workspaces still holds a placeholder")


def test_one_problem_of_an_entry_never_hides_another_and_a_misspelt_key_gets_its_correction():
    entry = {"subscription_id": SUB_A, "resource_group": "rg", "workspace": "ws", "timezone": "Europe/Berlin",
             "time_zone": "Berlin", "shutdown_days": "Mon-Fir"}  # fmt: skip
    found = problems(json.dumps([entry]))
    assert any("unknown key(s) timezone (did you mean time_zone?)" in p for p in found), found
    assert any("time_zone " in p and "Berlin" in p for p in found), found
    assert any("shutdown_days " in p for p in found), found
