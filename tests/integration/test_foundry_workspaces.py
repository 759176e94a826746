"""Azure AI Foundry hubs, projects and feature stores over the real SDKs and the stand-ins (both compute
clients): `*` discovery manages the hub and passes its project and a feature store over; an entry naming
a project fails that workspace, naming its hub; whatever ARM lists, an instance is mailed about once and
stopped once. In the stand-in, as in Foundry, a project shows (and stops) its hub's instances."""

import logging
import re

import pytest

from devhost import check
from shared.adapters import AdapterFactory
from shared.errors import ProjectWorkspaceError, RunFailedError
from shared.settings import Settings
from tests.fakes import SINGLE_WORKSPACE_OFF, environ

LISTING = r"/providers/Microsoft\.MachineLearningServices/workspaces$"
ONE_WORKSPACE = r"/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+$"
HUB_STOPS = r"/workspaces/(hub-ai|proj-ai)/computes/ci-hub/stop$"


@pytest.fixture
def foundry(wire):
    """The stand-in's workspace (ci-default), a hub (ci-hub), its project and a feature store (ci-fs)."""
    aml = wire.standins.azureml
    aml.seed("ci-default")
    hub = aml.add_workspace(aml.subscription_id, "rg-ai", "hub-ai", kind="Hub")
    hub.seed("ci-hub", created_by="alice@contoso.com")
    project = aml.add_workspace(aml.subscription_id, "rg-ai", "proj-ai", kind="Project", hub=hub)
    store = aml.add_workspace(aml.subscription_id, "rg-fs", "fs-features", kind="FeatureStore")
    store.seed("ci-fs")
    return aml, hub, project, store


def mailed(wire, to: str = "ml-team@contoso.com") -> dict[str, list[str]]:
    """The one mail to `to`: {"<workspace> (resource group <rg>)": [instance, ...]}."""
    (mail,) = wire.standins.sendgrid.mails_to(to)
    text = wire.standins.sendgrid.content_of(mail, "text/plain")
    sections = re.split(r"^== ", text, flags=re.MULTILINE)[1:]
    if not sections:  # a mail about one workspace names it in its first line
        sections = [re.search(r"in workspace (\S+ \(resource group [^)]+\))", text).group(1) + ":" + text]
    return {s.split(":", 1)[0]: re.findall(r"^\* (\S+) ", s, flags=re.MULTILINE) for s in sections}


def hub_stops(wire) -> int:
    """Stops of ci-hub sent to ARM, through the hub or through its project, whatever ARM answered."""
    return wire.standins.count("arm", "POST", HUB_STOPS)


def test_star_discovery_stops_a_hubs_instance_once_and_passes_its_project_and_a_feature_store_over(
    wire, foundry, caplog
):
    caplog.set_level(logging.INFO)
    aml, hub, project, store = foundry
    sub = aml.subscription_id
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=f"{sub}/*")

    wire.mail()
    assert mailed(wire) == {
        f"{aml.workspace} (resource group {aml.resource_group})": ["ci-default"],
        "hub-ai (resource group rg-ai)": ["ci-hub"],
    }
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Not managing")]
    assert lines == [
        f"Not managing workspace {sub}/rg-ai/proj-ai (found by {sub}/*): an Azure AI Foundry project of hub "
        f"{sub}/rg-ai/hub-ai: its compute instances are the hub's",
        f"Not managing workspace {sub}/rg-fs/fs-features (found by {sub}/*): of kind FeatureStore: only "
        "workspaces of kind Default and Hub are managed",
    ]

    wire.sweep()
    assert hub.instance("ci-hub") != "Running" and hub_stops(wire) == 1
    assert project.stopped_names() == [] and store.instance("ci-fs") == "Running"
    assert aml.instance("ci-default") != "Running"
    if wire.compute_api == "arm":  # the listing told each kind: no workspace is read on its own
        assert wire.standins.count("arm", "GET", ONE_WORKSPACE) == 0


def test_an_entry_naming_a_project_fails_that_workspace_naming_its_hub_and_the_rest_are_stopped(
    wire, foundry
):
    aml, hub, _, _ = foundry
    sub = aml.subscription_id
    named = f"{sub}/rg-ai/proj-ai"
    wire.configure(
        **SINGLE_WORKSPACE_OFF, aml_workspaces=f"{sub}/{aml.resource_group}/{aml.workspace}; {named}"
    )
    refusal = (
        f"aml_workspaces names {named}, an Azure AI Foundry project of hub {sub}/rg-ai/hub-ai: its compute "
        "instances are the hub's; name the hub instead"
    )

    with pytest.raises(RunFailedError) as failed:
        wire.mail()
    assert failed.value.failures == {named: refusal}
    assert mailed(wire) == {f"{aml.workspace} (resource group {aml.resource_group})": ["ci-default"]}

    with pytest.raises(RunFailedError) as failed:
        wire.sweep()
    assert failed.value.failures == {named: refusal}
    assert aml.instance("ci-default") != "Running"
    assert hub.instance("ci-hub") == "Running" and hub_stops(wire) == 0


def test_make_check_shows_the_project_entry_as_its_problem_and_what_star_passed_over(wire, foundry, capsys):
    aml, _, _, _ = foundry
    sub = aml.subscription_id
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=f"{sub}/rg-ai/proj-ai; {sub}/*")

    assert check.main(["--settings", "/nonexistent/local.settings.json"]) == 1

    out = capsys.readouterr().out
    project = out.split(f"Workspace {sub}/rg-ai/proj-ai\n", 1)[1].split("\n\n", 1)[0]
    assert (
        f"PROBLEM: aml_workspaces names {sub}/rg-ai/proj-ai, an Azure AI Foundry project of hub " in project
    )
    assert f"Workspace {sub}/rg-ai/hub-ai\n" in out and "would stop 1: ci-hub" in out
    assert f"Not managed: {sub}/rg-fs/fs-features, of kind FeatureStore" in out
    assert "1 problem(s): see above." in out and hub_stops(wire) == 0


def test_a_listing_naming_a_hub_twice_in_two_cases_and_its_project_twice_mails_and_stops_once(wire, foundry):
    aml, hub, project, _ = foundry
    sub = aml.subscription_id
    shouting = hub.arm_id.replace("/rg-ai/", "/RG-AI/").replace("/hub-ai", "/HUB-AI")
    page = {"value": [aml.listing_entry(hub), aml.listing_entry(project), aml.listing_entry(hub, shouting),
                      aml.listing_entry(project)]}  # fmt: skip
    wire.standins.add_fault(service="arm", method="GET", path_regex=LISTING, status=200, body=page)
    wire.configure(**SINGLE_WORKSPACE_OFF, aml_workspaces=f"{sub}/rg-ai/*")

    wire.mail()
    assert mailed(wire) == {"hub-ai (resource group rg-ai)": ["ci-hub"]}
    wire.sweep()
    assert hub.instance("ci-hub") != "Running" and hub_stops(wire) == 1


@pytest.mark.parametrize("compute_api", ["azureml-core", "arm"])
def test_both_compute_clients_refuse_a_project_on_their_first_read(standins, compute_api):
    aml = standins.azureml
    hub = aml.add_workspace(aml.subscription_id, "rg-ai", "hub-ai", kind="Hub")
    hub.seed("ci-hub")
    project = aml.add_workspace(aml.subscription_id, "rg-ai", "proj-ai", kind="Project", hub=hub)
    settings = Settings.from_environ(environ(**standins.app_settings(), compute_api=compute_api))
    factory = AdapterFactory(settings)
    if compute_api == "azureml-core":  # azureml-core's own read may leave the kind out: ARM's tells
        kindless = {k: v for k, v in aml.listing_entry(project).items() if k != "kind"}
        standins.add_fault(service="arm", method="GET", path_regex=r"/proj-ai$", status=200, body=kindless,
                           times=1)  # fmt: skip

    with pytest.raises(ProjectWorkspaceError, match=f"of hub {aml.subscription_id}/rg-ai/hub-ai"):
        factory.workspace(aml.subscription_id, "rg-ai", "proj-ai").list_instances()

    hub_workspace = factory.workspace(aml.subscription_id, "rg-ai", "hub-ai")
    assert [i.name for i in hub_workspace.list_instances()] == ["ci-hub"]
    assert standins.count(path_regex=r"/proj-ai/computes") == 0  # the project's computes never listed

    def versions(name: str) -> list[str]:
        reads = standins.records(service="arm", method="GET", path_regex=rf"/workspaces/{name}$")
        return [r.query["api-version"] for r in reads]

    if compute_api == "arm":  # one read of each: no listing of this run has described them
        assert versions("proj-ai") == versions("hub-ai") == ["2025-04-01"]
    else:  # azureml-core's own read, then ARM's at the current version; the hub's own read told its kind
        assert versions("proj-ai")[1:] == ["2025-04-01"] and "2025-04-01" not in versions("hub-ai")
