"""ARM's listing of workspaces (ArmWorkspaceDirectory) and the workspaces of one run, over the wire, as
AdapterFactory builds them for each compute API: azureml-core (the listing borrows azureml-core's token)
and ARM REST. Whatever the number of workspaces, subscriptions and resource groups, a run signs in once.
"""

import re
import time

import pytest

from shared.adapters import AdapterFactory
from shared.arm_client import ArmClient
from shared.arm_directory import ArmWorkspaceDirectory
from shared.domain import StopOutcome
from shared.errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from shared.settings import Settings
from tests.fakes import environ

pytestmark = pytest.mark.integration

OTHER = "7d2e9f10-0000-4000-8000-00000000e57a"
UNKNOWN = "00000000-0000-4000-8000-00000000dead"
LISTING = r"/providers/Microsoft.MachineLearningServices/workspaces$"
ARM_ID = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/([^/]+)$"
)


def factory_for(standins, compute_api: str, **settings) -> AdapterFactory:
    values = {**standins.app_settings(), "compute_api": compute_api, **settings}
    return AdapterFactory(Settings.from_environ(environ(**values)))


@pytest.fixture(params=["azureml-core", "arm"])
def factory(request, standins) -> AdapterFactory:
    return factory_for(standins, request.param)


def test_listing_by_subscription_and_by_resource_group_follows_every_page(factory, standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "workspace_page_size", 2)
    added = [
        a.add_workspace(a.subscription_id, a.resource_group, "ws-b"),
        a.add_workspace(a.subscription_id, "rg-two", a.workspace),  # the same name in another group
        a.add_workspace(a.subscription_id, "rg-two", "ws-north", region="northeurope"),
        a.add_workspace(a.subscription_id, "rg-two", "ws-no-role"),
    ]
    east = a.add_workspace(OTHER, "rg-east", "ws-east", region="eastus")
    a.deny(added[3])  # no role on it: ARM does not list it
    directory = factory.directory()

    everything = [w.id for w in directory.list_workspaces(a.subscription_id)]
    group = [w.id for w in directory.list_workspaces(a.subscription_id, "rg-two")]
    other = [w.id for w in directory.list_workspaces(OTHER)]

    assert everything == [h.arm_id for h in (a.default_workspace, *added[:3])]
    assert group == [added[1].arm_id, added[2].arm_id]
    assert other == [east.arm_id]
    pages = standins.records(service="arm", method="GET", path_regex=LISTING)
    assert [(p.query.get("$skipToken"), p.query["api-version"]) for p in pages] == [
        (None, "2025-04-01"),
        ("2", "2025-04-01"),  # four workspaces, two a page
        (None, "2025-04-01"),  # the resource group's two on one page
        (None, "2025-04-01"),
    ]
    assert standins.count(service="aad", method="POST") == 1


def test_one_sign_in_for_the_listing_two_workspaces_and_their_stops(factory, standins):
    a = standins.azureml
    west = a.add_workspace(a.subscription_id, "rg-west", "ws-west")
    east = a.add_workspace(OTHER, "rg-east", "ws-east", region="eastus")
    west.seed("ci-w1")
    west.seed("ci-w2", state="Stopped")
    east.seed("ci-e1", created_by="erin@contoso.com")
    directory = factory.directory()

    listed = directory.list_workspaces(a.subscription_id, "rg-west") + directory.list_workspaces(OTHER)
    ids = [w.id for w in listed]
    outcomes = {}
    for arm_id in ids:
        sub, rg, name = ARM_ID.match(arm_id).groups()
        workspace = factory.workspace(sub, rg, name)
        listed = workspace.list_instances()
        outcomes[name] = {i.name: workspace.stop(i.name) for i in listed if i.is_running}

    assert outcomes == {"ws-west": {"ci-w1": StopOutcome.STOPPED}, "ws-east": {"ci-e1": StopOutcome.STOPPED}}
    assert (west.stopped_names(), east.stopped_names(), a.stopped_names()) == (["ci-w1"], ["ci-e1"], [])
    assert standins.count(service="aad", method="POST") == 1  # listing, both workspaces, both stops
    assert standins.count(service="identity") == 0


def test_a_workspace_denied_or_removed_fails_alone_and_is_named(factory, standins):
    a = standins.azureml
    denied = a.add_workspace(a.subscription_id, "rg-x", "ws-denied")
    gone = a.add_workspace(a.subscription_id, "rg-x", "ws-gone")
    fine = a.add_workspace(OTHER, "rg-y", "ws-fine", region="eastus")
    for handle in (denied, gone, fine):
        handle.seed("ci-1")
    a.deny(denied)  # no role on it: every call refused
    a.remove_workspace(gone)

    with pytest.raises(CredentialsError) as refused:
        factory.workspace(a.subscription_id, "rg-x", "ws-denied").list_instances()
    with pytest.raises(NotFoundError) as missing:
        factory.workspace(a.subscription_id, "rg-x", "ws-gone").list_instances()
    ok = factory.workspace(OTHER, "rg-y", "ws-fine")

    assert [i.name for i in ok.list_instances()] == ["ci-1"] and ok.stop("ci-1") is StopOutcome.STOPPED
    assert "workspace rg-x/ws-denied: access denied (HTTP 403, AuthorizationFailed" in str(refused.value)
    assert refused.value.settings[0] == "tenant_id"  # the service principal's settings
    assert "workspace rg-x/ws-gone: not found" in str(missing.value)
    assert "check aml_workspaces, or subscription_id, resource_group and aml_workspace" in str(missing.value)
    assert standins.count(service="aad", method="POST") == 1


@pytest.mark.parametrize("compute_api", ["azureml-core", "arm"])
def test_a_refused_sign_in_names_the_setting_before_any_listing(standins, compute_api):
    directory = factory_for(standins, compute_api, service_principal_password="not-the-secret").directory()
    with pytest.raises(CredentialsError) as exc:
        directory.list_workspaces(standins.azureml.subscription_id)
    assert "AADSTS7000215" in str(exc.value)
    assert exc.value.settings == ("service_principal_password",)
    assert standins.count(service="arm") == 0


# --------------------------------------------------------------------------- errors, on the ARM client
@pytest.fixture
def directory(standins) -> ArmWorkspaceDirectory:
    from azure.identity import ClientSecretCredential

    a = standins.azureml
    credential = ClientSecretCredential(a.tenant_id, a.client_id, a.client_secret, retry_total=0)
    return ArmWorkspaceDirectory(ArmClient(credential, credential_settings=("tenant_id",)))


def test_unknown_subscription_or_resource_group_is_not_found_naming_it(standins, directory):
    a = standins.azureml
    with pytest.raises(NotFoundError) as exc:
        directory.list_workspaces(UNKNOWN)
    assert str(exc.value).startswith(
        f"AzureML: listing the workspaces of subscription {UNKNOWN}: not found (HTTP 404, SubscriptionNotFound: "
    )
    with pytest.raises(NotFoundError) as exc:
        directory.list_workspaces(a.subscription_id, "rg-nowhere")
    assert (
        f"listing the workspaces of resource group rg-nowhere of subscription {a.subscription_id}: not found "
        "(HTTP 404, ResourceGroupNotFound: "
    ) in str(exc.value)
    assert "check the subscription id and resource group of the aml_workspaces entry" in str(exc.value)


def test_a_listing_the_identity_may_not_make_is_a_credentials_error_naming_the_subscription(
    standins, directory
):
    a = standins.azureml
    message = (
        f"The client '{a.client_id}' with object id 'x' does not have authorization to perform action "
        "'Microsoft.MachineLearningServices/workspaces/read' over scope '/subscriptions/...'"
    )
    body = {"error": {"code": "AuthorizationFailed", "message": message}}
    standins.add_fault(service="arm", method="GET", path_regex=LISTING, status=403, body=body, times=1)
    with pytest.raises(CredentialsError) as exc:
        directory.list_workspaces(a.subscription_id, "rg-ml-standin")
    assert (
        f"resource group rg-ml-standin of subscription {a.subscription_id}: access denied (HTTP 403, AuthorizationFailed"
        in str(exc.value)
    )
    assert exc.value.settings == ("tenant_id",)


@pytest.mark.parametrize(("status", "retry_after"), [(429, 17), (503, None)])
def test_throttling_and_5xx_on_a_later_page_are_transient(
    standins, directory, monkeypatch, status, retry_after
):
    a = standins.azureml
    monkeypatch.setattr(a, "workspace_page_size", 1)
    a.add_workspace(a.subscription_id, "rg-two", "ws-two")
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    standins.add_fault(service="arm", path_regex=LISTING, status=status, headers=headers, skip=1, times=1)
    with pytest.raises(TransientServiceError, match=f"HTTP {status}") as exc:
        directory.list_workspaces(a.subscription_id)
    assert exc.value.retry_after == retry_after
    assert len(directory.list_workspaces(a.subscription_id)) == 2  # the fault is spent: nothing remembered


def test_a_next_link_to_another_host_is_refused_and_gets_no_token(standins, directory):
    page = {"value": [], "nextLink": "https://collector.example.net/steal?api-version=1"}
    standins.add_fault(service="arm", path_regex=LISTING, status=200, body=page, times=1)
    with pytest.raises(ServiceError, match=r"nextLink to another host \(collector\.example\.net\)"):
        directory.list_workspaces(standins.azureml.subscription_id)
    assert standins.count(service="unknown") == 0


def test_azureml_cores_token_is_lent_for_arm_only(standins):
    from shared.azureml_workspace import AzureMLAuthCredential, authentication
    from shared.credentials import ServicePrincipal

    a = standins.azureml
    auth = authentication(ServicePrincipal(a.tenant_id, a.client_id, a.client_secret))
    credential = AzureMLAuthCredential(auth, ("tenant_id",))
    with pytest.raises(ValueError, match="ARM tokens only"):
        credential.get_token("https://vault.azure.net/.default")
    token = credential.get_token("https://management.azure.com/.default")
    assert token.token == auth.get_authentication_header()["Authorization"].split()[1]  # the same, cached
    assert token.expires_on > time.time() + 3000  # read from the JWT: the stand-in's live an hour
    assert standins.count(service="aad", method="POST") == 1


def test_both_compute_clients_report_each_instances_size_and_region(factory, standins):
    """The size and region set an instance's price (the morning-after report's savings)."""
    aml = standins.azureml
    aml.seed("ci-small", vm_size="STANDARD_DS3_V2")
    us = aml.add_workspace(aml.subscription_id, "rg-us", "ws-us", region="eastus")
    us.seed("ci-gpu", vm_size="STANDARD_NC6S_V3")
    here = factory.workspace(aml.subscription_id, aml.resource_group, aml.workspace).list_instances()
    there = factory.workspace(aml.subscription_id, "rg-us", "ws-us").list_instances()
    assert [(i.name, i.size, i.region) for i in here] == [("ci-small", "STANDARD_DS3_V2", "westeurope")]
    assert [(i.name, i.size, i.region) for i in there] == [("ci-gpu", "STANDARD_NC6S_V3", "eastus")]


def test_azureml_core_stops_are_paced_by_the_subscriptions_one_write_bucket(standins):
    """Without pacing, azureml-core's stops in two workspaces of one subscription overrun ARM's bucket."""
    from shared.arm_pacing import WriteBucket
    from shared.azureml_workspace import AzureMLWorkspace, authentication

    aml = standins.azureml
    other = aml.add_workspace(aml.subscription_id, "rg-two", "ws-two")
    for n in range(6):
        aml.seed(f"ci-{n}")
        other.seed(f"ci-{n}")
    standins.enforce_write_bucket(capacity=4, refill_per_second=20)
    settings = Settings.from_environ(environ(**standins.app_settings()))
    principal = AdapterFactory(settings).principal()
    auth, bucket = authentication(principal), WriteBucket(4 - 1, 20)
    spaces = [AzureMLWorkspace(aml.subscription_id, rg, name, principal, auth=auth, write_bucket=bucket)
              for rg, name in ((aml.resource_group, aml.workspace), ("rg-two", "ws-two"))]  # fmt: skip
    for space in spaces:
        space.list_instances()
    outcomes = [space.stop(f"ci-{n}") for n in range(6) for space in spaces]
    assert {o.value for o in outcomes} == {"stopped"}
    assert standins.count("arm", status=429) == 0
