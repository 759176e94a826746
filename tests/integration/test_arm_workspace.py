"""ArmWorkspace over the wire: real azure-identity credentials and requests against the loopback cloud.

Both ways the app signs in are exercised: a service principal (ClientSecretCredential against the
Azure AD stand-in) and the Function App's managed identity (ManagedIdentityCredential against the
identity-endpoint stand-in, found through IDENTITY_ENDPOINT/IDENTITY_HEADER as in App Service). The
credentials are built with `retry_total=0`, as the app should build them: shared.retry decides about
retrying, once, and azure-core's own retries would otherwise stack under it.
"""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.identity import ClientSecretCredential, ManagedIdentityCredential

from shared.arm_client import ArmClient
from shared.arm_pacing import WriteBucket
from shared.arm_workspace import API_VERSION, MI_SETTINGS, SP_SETTINGS, ArmWorkspace
from shared.domain import StopOutcome
from shared.errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from shared.retry import Backpressure, RetryPolicy
from shared.stopping import stop_while_fresh

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARM_SCOPE = "https://management.azure.com/.default"
COMPUTES = r"/workspaces/[^/]+/computes$"
STOP = r"/computes/[^/]+/stop$"
NO_WAIT = RetryPolicy(attempts=1)  # the adapter's own behaviour, without the app's retries


def service_principal(standins, **override) -> ClientSecretCredential:
    a = standins.azureml
    args = {"tenant_id": a.tenant_id, "client_id": a.client_id, "client_secret": a.client_secret, **override}
    return ClientSecretCredential(**args, retry_total=0)


def managed_identity(standins, monkeypatch, **kwargs) -> ManagedIdentityCredential:
    for name, value in standins.identity_env.items():
        monkeypatch.setenv(name, value)
    return ManagedIdentityCredential(retry_total=0, **kwargs)


@pytest.fixture(params=["service principal", "managed identity"])
def signed_in(request, standins, monkeypatch):
    """(credential, the settings its errors name, how many token requests it made so far)."""
    if request.param == "service principal":
        return service_principal(standins), SP_SETTINGS, lambda: standins.count(service="aad", method="POST")
    credential = managed_identity(standins, monkeypatch)
    return credential, MI_SETTINGS, lambda: standins.count(service="identity")


def workspace(standins, credential, settings=SP_SETTINGS, **kwargs) -> ArmWorkspace:
    a = standins.azureml
    return ArmWorkspace(
        a.subscription_id, a.resource_group, a.workspace, credential, credential_settings=settings, **kwargs
    )


def stop_all(ws: ArmWorkspace, max_parallel: int = 16):
    listing = ws.list_instances()
    listed_at = time.monotonic()
    names = [i.name for i in listing if i.is_running]
    return stop_while_fresh(
        names, ws, ws.list_instances, listed_at, time.monotonic, NO_WAIT, Backpressure(), max_parallel, 60
    )


# --------------------------------------------------------------------------- listing and stopping
def test_list_follows_next_link_and_keeps_only_compute_instances(standins, signed_in, monkeypatch):
    credential, settings, token_calls = signed_in
    a = standins.azureml
    monkeypatch.setattr(a, "page_size", 2)
    a.seed("ci-alice", created_by="alice@contoso.com", tags={"auto-shutdown": "off", "team": "nlp"})
    a.seed("cluster-gpu", compute_type="AmlCompute")
    a.seed("ci-bob", state="Stopped", created_by="bob@contoso.com")
    a.seed("ci-carol", state="JobRunning", created_by="carol@contoso.com")
    a.seed("ci-dave", state="Starting", created_by="dave@contoso.com", tags={"team": "vision"})

    instances = workspace(standins, credential, settings).list_instances()

    assert [(i.name, i.state, i.owner, i.tags) for i in instances] == [
        ("ci-alice", "Running", "alice@contoso.com", (("auto-shutdown", "off"), ("team", "nlp"))),
        ("ci-bob", "Stopped", "bob@contoso.com", ()),
        ("ci-carol", "JobRunning", "carol@contoso.com", ()),
        ("ci-dave", "Starting", "dave@contoso.com", (("team", "vision"),)),
    ]
    pages = standins.records(service="arm", method="GET", path_regex=COMPUTES)
    assert [(p.query.get("$skipToken"), p.status) for p in pages] == [(None, 200), ("2", 200), ("4", 200)]
    assert {p.query["api-version"] for p in pages} == {API_VERSION}
    assert standins.count(service="azureml") == 0  # ARM only: no regional host, no discovery
    assert token_calls() == 1


def test_stops_are_one_post_each_on_one_token_and_few_connections(standins, signed_in, monkeypatch):
    credential, settings, token_calls = signed_in
    monkeypatch.setattr(standins.azureml, "page_size", 100)  # ARM's page: the 100 instances in one
    for i in range(100):
        standins.azureml.seed(f"ci-{i:03}")
    ws = workspace(standins, credential, settings)

    results = stop_all(ws, max_parallel=16)

    assert results == {f"ci-{i:03}": StopOutcome.STOPPED for i in range(100)}
    assert sorted(standins.stopped_names()) == sorted(results)
    arm_calls = standins.count(service="arm")
    # Its kind (a workspace no listing of the run has described: is it a Foundry project?), one
    # listing page, then exactly one POST per instance: 1.02 calls each.
    assert arm_calls == 102
    assert standins.count(service="arm", method="POST", path_regex=STOP, status=202) == 100
    # ARM refuses any request without an api-version (400 MissingApiVersionParameter): a stop too.
    versions = {r.query.get("api-version") for r in standins.records(service="arm", method="POST")}
    assert versions == {API_VERSION}
    assert token_calls() == 1  # one token for the whole run
    assert standins.max_in_flight(service="arm", method="POST") <= 16
    # One pooled session: connections are reused, at most one per parallel stop (+ Azure AD's).
    assert standins.connections <= 16 + 2, standins.connections


def test_a_stop_refused_with_409_is_not_running(standins, monkeypatch):
    monkeypatch.setattr(standins.azureml, "stop_delay", 30)
    standins.azureml.seed("ci-off", state="Stopped")
    standins.azureml.seed("ci-on")
    ws = workspace(standins, service_principal(standins))

    assert ws.stop("ci-off") is StopOutcome.NOT_RUNNING
    assert ws.stop("ci-on") is StopOutcome.STOPPED
    assert ws.stop("ci-on") is StopOutcome.NOT_RUNNING  # Stopping: "already an active operation"
    assert [r.status for r in standins.records(service="arm", method="POST")] == [409, 202, 409]
    assert standins.stopped_names() == ["ci-on"]


def test_a_user_assigned_identity_signs_in_with_its_client_id(standins, monkeypatch):
    standins.azureml.seed("ci-1")
    client_id = standins.identity.user_assigned[0]
    credential = managed_identity(standins, monkeypatch, client_id=client_id)
    ws = workspace(standins, credential, MI_SETTINGS)

    assert [i.name for i in ws.list_instances()] == ["ci-1"]
    assert ws.stop("ci-1") is StopOutcome.STOPPED
    (token_call,) = standins.records(service="identity")
    assert token_call.query == {
        "api-version": "2019-08-01",
        "resource": "https://management.azure.com",
        "client_id": client_id,
    }
    assert token_call.header("X-IDENTITY-HEADER") == standins.identity.header


def test_a_token_about_to_expire_is_replaced_and_a_good_one_reused(standins):
    standins.azureml.seed("ci-1")
    real = service_principal(standins)
    lifetimes = iter([120, 3600])  # the first token expires within the 5-minute margin
    calls = []

    class Credential:
        def get_token(self, *scopes, **kwargs):
            calls.append(scopes)
            token = real.get_token(*scopes)
            return AccessToken(token.token, int(time.time()) + next(lifetimes))

    ws = workspace(standins, Credential())
    ws.list_instances()
    ws.list_instances()
    ws.stop("ci-1")
    assert calls == [(ARM_SCOPE,), (ARM_SCOPE,)]


def test_importing_the_adapter_never_imports_azureml():
    code = (
        "import sys, shared.arm_workspace, shared.arm_client, shared.arm_errors, shared.arm_directory\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('azureml', 'msrest', 'msrestazure'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --------------------------------------------------------------------------- refused credentials
def test_identity_endpoint_refusing_the_header_is_a_credentials_error(standins, monkeypatch):
    credential = managed_identity(standins, monkeypatch)
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-platform-secret")
    with pytest.raises(CredentialsError) as exc:
        workspace(standins, credential, MI_SETTINGS).list_instances()
    assert exc.value.settings == MI_SETTINGS
    assert "signing in to Azure AD" in str(exc.value)
    assert "managed_identity_client_id" in str(exc.value)
    assert [r.status for r in standins.records(service="identity")] == [401]
    assert standins.count(service="arm") == 0


def test_an_unknown_user_assigned_identity_is_a_credentials_error(standins, monkeypatch):
    credential = managed_identity(standins, monkeypatch, client_id="0badc0de-0000-4000-8000-000000000000")
    with pytest.raises(CredentialsError, match="Unable to load the proper Managed Identity") as exc:
        workspace(standins, credential, MI_SETTINGS).list_instances()
    assert exc.value.settings == MI_SETTINGS
    assert [r.status for r in standins.records(service="identity")] == [400]


@pytest.mark.parametrize(
    ("override", "code", "settings"),
    [
        ({"client_secret": "not-the-secret"}, "AADSTS7000215", ("service_principal_password",)),
        (
            {"client_id": "0c5b7a4e-0000-4000-8000-00000000dead"},
            "AADSTS700016",
            ("service_principal_id", "tenant_id"),
        ),
    ],
    ids=["wrong secret", "unknown application"],
)
def test_azure_ad_refusing_the_service_principal_names_the_setting(standins, override, code, settings):
    with pytest.raises(CredentialsError) as exc:
        workspace(standins, service_principal(standins, **override)).list_instances()
    assert exc.value.settings == settings
    assert code in str(exc.value)
    assert standins.count(service="arm") == 0


def test_an_unknown_tenant_names_tenant_id(standins):
    credential = service_principal(standins, tenant_id="00000000-dead-beef-0000-000000000000")
    with pytest.raises(CredentialsError) as exc:
        workspace(standins, credential).list_instances()
    assert exc.value.settings == ("tenant_id",)


def test_403_on_the_workspace_names_the_identity_settings(standins, signed_in):
    credential, settings, _ = signed_in
    body = {
        "error": {
            "code": "AuthorizationFailed",
            "message": "The client does not have authorization to perform action "
            "'Microsoft.MachineLearningServices/workspaces/computes/read'.",
        }
    }
    standins.add_fault(service="arm", method="GET", path_regex=COMPUTES, status=403, body=body)
    with pytest.raises(CredentialsError) as exc:
        workspace(standins, credential, settings).list_instances()
    assert exc.value.settings == settings
    a = standins.azureml
    assert (
        f"listing compute instances in workspace {a.resource_group}/{a.workspace}: access denied (HTTP 403, AuthorizationFailed"
        in str(exc.value)
    )
    for setting in settings:
        assert setting in str(exc.value)


def test_a_workspace_the_identity_may_not_touch_is_a_credentials_error_naming_it(standins):
    a = standins.azureml
    denied = a.add_workspace(a.subscription_id, "rg-other", "ws-denied")
    denied.seed("ci-1")
    a.deny(denied, scope="writes")  # Reader: it may list, not stop
    ws = ArmWorkspace(
        a.subscription_id,
        "rg-other",
        "ws-denied",
        service_principal(standins),
        credential_settings=SP_SETTINGS,
    )
    assert [i.name for i in ws.list_instances()] == ["ci-1"]
    with pytest.raises(CredentialsError) as exc:
        ws.stop("ci-1")
    assert str(exc.value).startswith(
        "AzureML: stopping ci-1 in workspace rg-other/ws-denied: access denied (HTTP 403, AuthorizationFailed: "
    )
    assert exc.value.settings == SP_SETTINGS


def test_a_token_arm_no_longer_accepts_is_a_credentials_error(standins):
    standins.azureml.seed("ci-1")
    ws = workspace(standins, service_principal(standins))
    ws.list_instances()
    standins.azureml.revoke_tokens()
    with pytest.raises(CredentialsError, match="HTTP 401, InvalidAuthenticationToken"):
        ws.stop("ci-1")


# --------------------------------------------------------------------------- not found
def test_an_unknown_workspace_is_named_with_the_settings_that_name_it(standins):
    a = standins.azureml
    ws = ArmWorkspace(a.subscription_id, a.resource_group, "no-such-ws", service_principal(standins))
    with pytest.raises(NotFoundError) as exc:
        ws.list_instances()
    assert (
        f"listing compute instances in workspace {a.resource_group}/no-such-ws: not found (HTTP 404, ResourceNotFound"
        in str(exc.value)
    )
    assert "check aml_workspaces, or subscription_id, resource_group and aml_workspace" in str(exc.value)


def test_a_removed_workspace_is_not_found(standins):
    a = standins.azureml
    gone = a.add_workspace(a.subscription_id, "rg-old", "ws-gone")
    ws = ArmWorkspace(a.subscription_id, "rg-old", "ws-gone", service_principal(standins))
    assert ws.list_instances() == []
    a.remove_workspace(gone)
    with pytest.raises(
        NotFoundError, match=r"in workspace rg-old/ws-gone: not found \(HTTP 404, ResourceNotFound"
    ):
        ws.list_instances()


def test_stopping_an_unknown_instance_is_not_found(standins):
    a = standins.azureml
    with pytest.raises(
        NotFoundError, match=f"stopping ci-gone in workspace {a.resource_group}/{a.workspace}: not found"
    ):
        workspace(standins, service_principal(standins)).stop("ci-gone")


# --------------------------------------------------------------------------- transient failures
@pytest.mark.parametrize("form", ["seconds", "HTTP date"])
def test_429_carries_retry_after_in_seconds_or_as_a_date(standins, form):
    standins.azureml.seed("ci-1")
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    retry_after = "17" if form == "seconds" else when
    standins.add_fault(
        service="arm",
        method="POST",
        path_regex=STOP,
        status=429,
        headers={"Retry-After": retry_after},
        times=1,
    )
    ws = workspace(standins, service_principal(standins))
    with pytest.raises(TransientServiceError, match="HTTP 429") as exc:
        ws.stop("ci-1")
    expected = 17 if form == "seconds" else 120
    assert exc.value.retry_after == pytest.approx(expected, abs=3)
    assert ws.stop("ci-1") is StopOutcome.STOPPED  # the same call goes through once the fault is spent


@pytest.mark.parametrize(
    ("method", "path_regex", "status", "skip"),
    [("GET", COMPUTES, 500, 1), ("POST", STOP, 503, 0), ("POST", STOP, 502, 0)],
    ids=["500 on the second page", "503 on a stop", "502 on a stop"],
)
def test_5xx_is_transient_without_retry_after(standins, monkeypatch, method, path_regex, status, skip):
    monkeypatch.setattr(standins.azureml, "page_size", 1)
    standins.azureml.seed("ci-1")
    standins.azureml.seed("ci-2")
    standins.add_fault(service="arm", method=method, path_regex=path_regex, status=status, skip=skip, times=1)
    ws = workspace(standins, service_principal(standins))
    with pytest.raises(TransientServiceError, match=f"HTTP {status}") as exc:
        ws.stop("ci-1") if method == "POST" else ws.list_instances()
    assert exc.value.retry_after is None
    assert (
        standins.count(service="arm", method=method, path_regex=path_regex, status=status) == 1
    )  # no retries


def test_a_dropped_connection_is_transient_and_the_pool_recovers(standins):
    standins.azureml.seed("ci-1")
    ws = workspace(standins, service_principal(standins))
    ws.list_instances()
    standins.add_fault(service="arm", method="POST", path_regex=STOP, drop=True, times=1)
    with pytest.raises(TransientServiceError, match="no answer"):
        ws.stop("ci-1")
    assert ws.stop("ci-1") is StopOutcome.STOPPED


def test_a_hung_call_times_out_as_transient(standins):
    standins.azureml.seed("ci-1")
    ws = workspace(standins, service_principal(standins), timeout=(2.0, 0.5))
    ws.list_instances()  # signed in: only the hung call is timed below
    standins.add_fault(service="arm", method="GET", path_regex=COMPUTES, delay=2.0, times=1)
    started = time.monotonic()
    with pytest.raises(TransientServiceError, match="ReadTimeout"):
        ws.list_instances()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("service", ["identity", "aad"])
def test_a_failing_token_service_is_transient(standins, monkeypatch, service):
    if service == "identity":
        credential, settings = managed_identity(standins, monkeypatch), MI_SETTINGS
    else:
        credential, settings = service_principal(standins), SP_SETTINGS
    standins.add_fault(service=service, status=503)
    ws = workspace(standins, credential, settings)
    with pytest.raises(TransientServiceError, match="signing in to Azure AD: HTTP 503"):
        ws.list_instances()
    # MSAL remembers a 5xx for its Retry-After (5 s without one): a retry sooner is answered from memory.
    assert standins.count(service=service, status=503) == 1
    assert standins.count(service="arm") == 0


def test_a_next_link_to_another_host_is_refused_and_gets_no_token(standins):
    page = {"value": [], "nextLink": "https://collector.example.net/steal?api-version=1"}
    standins.add_fault(service="arm", method="GET", path_regex=COMPUTES, status=200, body=page, times=1)
    with pytest.raises(ServiceError, match=r"nextLink to another host \(collector\.example\.net\)"):
        workspace(standins, service_principal(standins)).list_instances()
    assert standins.count(service="unknown") == 0


# --------------------------------------------------------------------------- ARM's write bucket
def test_pacing_keeps_a_large_run_clear_of_arms_write_throttling(standins):
    standins.enforce_write_bucket(capacity=10, refill_per_second=20)
    for i in range(40):
        standins.azureml.seed(f"ci-{i:02}")
    # ARM's bucket less a headroom of 0.2 s of writes, as the default bucket keeps 2 s (WRITE_HEADROOM).
    ws = workspace(standins, service_principal(standins), write_bucket=WriteBucket(10 - 4, 20))

    started = time.monotonic()
    results = stop_all(ws, max_parallel=16)

    assert set(results.values()) == {StopOutcome.STOPPED}
    assert standins.count(service="arm", status=429) == 0
    assert time.monotonic() - started >= (40 - 6) / 20 - 0.1  # the first 6 at once, then 20 per second


def test_without_pacing_arm_throttles_with_retry_after(standins):
    standins.enforce_write_bucket(capacity=5, refill_per_second=1)
    for i in range(8):
        standins.azureml.seed(f"ci-{i}")
    ws = workspace(standins, service_principal(standins), write_bucket=WriteBucket(1000, 1000))
    results = stop_all(ws, max_parallel=8)

    throttled = [r for r in results.values() if isinstance(r, TransientServiceError)]
    assert len(throttled) == 3
    assert all(
        error.retry_after == 1 and "SubscriptionRequestsThrottled" in str(error) for error in throttled
    )


def test_the_remaining_writes_arm_reports_slow_a_fresh_run_down(standins):
    standins.enforce_write_bucket(capacity=10, refill_per_second=5)
    for i in range(15):
        standins.azureml.seed(f"ci-{i:02}")
    earlier = workspace(standins, service_principal(standins), write_bucket=WriteBucket(10, 5))
    for i in range(9):  # an earlier run of the same principal used 9 of ARM's 10 writes
        assert earlier.stop(f"ci-{i:02}") is StopOutcome.STOPPED

    ws = workspace(standins, service_principal(standins), write_bucket=WriteBucket(10, 5))
    ws.list_instances()
    started = time.monotonic()
    outcomes = [ws.stop(f"ci-{i:02}") for i in range(9, 13)]

    assert outcomes == [StopOutcome.STOPPED] * 4
    assert standins.count(service="arm", status=429) == 0
    assert time.monotonic() - started >= 0.4  # paced by ARM's count, not its own full bucket


def test_one_client_one_sign_in_and_one_write_bucket_per_subscription(standins):
    a = standins.azureml
    other = "7d2e9f10-0000-4000-8000-00000000e57a"
    twin = a.add_workspace(a.subscription_id, "rg-twin", a.workspace)  # same subscription, same name
    east = a.add_workspace(other, "rg-east", "ws-east", region="eastus")
    for handle in (a.default_workspace, twin, east):
        for i in range(3):
            handle.seed(f"ci-{i}")
    standins.enforce_write_bucket(capacity=4, refill_per_second=0.5)  # ARM's: per subscription
    client = ArmClient(service_principal(standins), write_bucket=lambda subscription: WriteBucket(4, 0.5))
    home = ArmWorkspace(a.subscription_id, a.resource_group, a.workspace, client=client)
    home_twin = ArmWorkspace(a.subscription_id, "rg-twin", a.workspace, client=client)
    away = ArmWorkspace(other, "rg-east", "ws-east", client=client)
    assert client.bucket(a.subscription_id.upper()) is client.bucket(a.subscription_id)
    for ws in (home, home_twin, away):
        ws.list_instances()

    # Six stops in one subscription share its bucket of 4: the fifth and sixth wait for refills (2 s and
    # 4 s, well within a listing's freshness), and none earns a 429. The other subscription's is full.
    started = time.monotonic()
    outcomes = [ws.stop(f"ci-{i}") for ws in (home, home_twin) for i in range(3)]
    home_took = time.monotonic() - started
    started = time.monotonic()
    away_outcomes = [away.stop(f"ci-{i}") for i in range(3)]
    away_took = time.monotonic() - started

    assert outcomes == [StopOutcome.STOPPED] * 6 and away_outcomes == [StopOutcome.STOPPED] * 3
    assert home_took >= 4 - 0.2 and away_took < 1.0
    assert standins.count(service="arm", status=429) == 0
    assert standins.count(service="aad", method="POST") == 1  # one sign-in for three workspaces
    assert (a.stopped_names(), twin.stopped_names(), east.stopped_names()) == (
        ["ci-0", "ci-1", "ci-2"], ["ci-0", "ci-1", "ci-2"], ["ci-0", "ci-1", "ci-2"]
    )  # fmt: skip
    assert standins.connections <= 2  # one pooled connection to ARM (+ Azure AD's)


def test_a_workspace_takes_a_credential_or_a_client(standins):
    client = ArmClient(service_principal(standins))
    a = standins.azureml
    with pytest.raises(TypeError, match="a credential or a client"):
        ArmWorkspace(a.subscription_id, a.resource_group, a.workspace)
    with pytest.raises(TypeError, match="a credential or a client"):
        ArmWorkspace(
            a.subscription_id, a.resource_group, a.workspace, service_principal(standins), client=client
        )
    with pytest.raises(TypeError, match="timeout belong"):
        ArmWorkspace(a.subscription_id, a.resource_group, a.workspace, client=client, timeout=(1, 1))
    shared = ArmWorkspace(a.subscription_id, a.resource_group, a.workspace, client=client)
    shared.close()  # not its client to close
    assert shared.list_instances() == []


def test_a_stop_whose_turn_comes_after_its_listing_went_stale_is_not_sent(standins):
    for name in ("ci-1", "ci-2"):
        standins.azureml.seed(name)
    ws = workspace(standins, service_principal(standins), write_bucket=WriteBucket(1, 0.05))  # 20 s a write
    ws.list_instances()
    started = time.monotonic()
    assert ws.stop("ci-1") is StopOutcome.STOPPED
    assert ws.stop("ci-2") is StopOutcome.STALE  # its token would come 20 s later: the sweep lists again
    assert time.monotonic() - started < 2
    assert standins.stopped_names() == ["ci-1"]
