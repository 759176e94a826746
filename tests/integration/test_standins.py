"""The stand-ins, driven by the REAL SDKs (not by the app).

These tests pin down what azureml-core 1.61, sendgrid 6.12.5 and azure-cosmosdb-table 1.0.6 do over
the wire and which exceptions they raise, so the app's error mapping rests on observed behaviour.
"""

import base64
import json
import socket
import threading
import time
import urllib.error
from pathlib import Path

import pytest
import requests
import sendgrid
from azure.common import AzureConflictHttpError, AzureException, AzureHttpError
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService
from azureml._restclient import clientbase
from azureml._vendor.azure_cli_core.azclierror import AuthenticationError
from azureml.core import Workspace
from azureml.core.authentication import ServicePrincipalAuthentication
from azureml.core.compute import AmlCompute, ComputeInstance, ComputeTarget
from azureml.exceptions import ComputeTargetException, ProjectSystemException
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    InternalServerError,
    UnauthorizedError,
)
from sendgrid.helpers.mail import Mail

from loopback.azurite import free_port

pytestmark = pytest.mark.integration

RP = "/providers/Microsoft.MachineLearningServices/workspaces"


def make_workspace(standins, **override):
    a = standins.azureml
    cfg = {
        "tenant": a.tenant_id,
        "client": a.client_id,
        "secret": a.client_secret,
        "sub": a.subscription_id,
        "rg": a.resource_group,
        "name": a.workspace,
        **override,
    }
    auth = ServicePrincipalAuthentication(cfg["tenant"], cfg["client"], cfg["secret"])
    return Workspace(cfg["sub"], cfg["rg"], cfg["name"], auth=auth)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def a_mail(to="bob@contoso.com", **content):
    content = content or {"html_content": '<p>Hello <a href="https://example.org/keep?t=1">keep it</a></p>'}
    return Mail(from_email="noreply@contoso.com", to_emails=to, subject="Your compute", **content)


# --------------------------------------------------------------------------- azureml-core
def test_retries_are_disabled_for_the_whole_run():
    # Precondition of every timing assertion below: read by azureml at import time.
    assert clientbase.DEFAULT_RETRIES == 0


def test_workspace_list_over_pages_and_stop(standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "page_size", 2)
    monkeypatch.setattr(a, "stop_delay", 0.5)  # long enough to see "Stopping" on a busy machine
    for i in range(4):
        a.seed(f"ci-{i}", created_by=f"user{i}@contoso.com")
    a.seed("cluster", compute_type="AmlCompute")

    ws = make_workspace(standins)
    computes = ComputeTarget.list(ws)

    assert [(type(c), c.name) for c in computes] == [
        *[(ComputeInstance, f"ci-{i}") for i in range(4)],
        (AmlCompute, "cluster"),
    ]
    ci = next(c for c in computes if c.name == "ci-2")
    assert ci.status.state == "Running"
    assert ci.status.created_by_user_name == "user2@contoso.com"

    pages = standins.records(service="azureml", method="GET", path_regex=r"/computes$")
    assert len(pages) == 3  # 5 computes, 2 per page, nextLink followed
    assert [p.query.get("$skipToken") for p in pages] == [None, "2", "4"]
    assert all(p.query.get("api-version") == "2020-02-02" for p in pages)

    ci.stop()
    assert standins.stopped_names() == ["ci-2"]
    assert a.instance("ci-2") == "Stopping"
    assert wait_for(lambda: a.instance("ci-2") == "Stopped")
    assert a.instances() == {
        "ci-0": "Running",
        "ci-1": "Running",
        "ci-2": "Stopped",
        "ci-3": "Running",
        "cluster": "Running",
    }

    sub, rg, name, region = a.subscription_id, a.resource_group, a.workspace, a.region
    ws_path = f"/subscriptions/{sub}/resourceGroups/{rg}{RP}/{name}"
    calls = [(r.method, r.host, r.path, r.status) for r in standins.log]
    assert calls == [
        ("GET", "login.microsoftonline.com", f"/{a.tenant_id}/v2.0/.well-known/openid-configuration", 200),
        ("POST", "login.microsoftonline.com", f"/{a.tenant_id}/oauth2/v2.0/token", 200),
        ("GET", "management.azure.com", "/subscriptions", 200),
        ("GET", "management.azure.com", ws_path, 200),
        ("GET", f"{region}.api.azureml.ms", "/discovery", 200),
        *[("GET", f"{region}.api.azureml.ms", f"/rp/workspaces{ws_path}/computes", 200)] * 3,
        ("GET", f"{region}.api.azureml.ms", f"/rp/workspaces{ws_path}/computes/ci-2", 200),
        ("POST", "management.azure.com", f"{ws_path}/computes/ci-2/stop", 202),
    ], standins.traffic.dump()


def test_compute_tags_reach_the_sdk_from_list_and_get(standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "page_size", 1)  # the tagged instance is on the second page
    tags = {"auto-shutdown": "off", "Owner": "alice"}
    a.seed("ci-plain")
    a.seed("ci-tagged", tags=tags)
    ws = make_workspace(standins)

    listed = {c.name: c for c in ComputeTarget.list(ws)}
    assert type(listed["ci-tagged"]) is ComputeInstance
    assert listed["ci-tagged"].tags == tags
    assert listed["ci-plain"].tags == {}
    assert ComputeInstance(ws, "ci-tagged").tags == tags

    # ARM serves the same top-level tags as the regional host, in its list and its single GET.
    auth = ws._auth.get_authentication_header()
    computes = f"https://management.azure.com{a.workspace_arm_id}/computes"
    single = requests.get(f"{computes}/ci-tagged?api-version=2023-04-01", headers=auth, timeout=5)
    assert single.json()["tags"] == tags
    page = requests.get(f"{computes}?api-version=2023-04-01&$skipToken=1", headers=auth, timeout=5)
    assert [c["tags"] for c in page.json()["value"]] == [tags]


def test_stop_answers_202_with_async_operation_that_succeeds(standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "stop_delay", 0.5)
    a.seed("ci-x")
    ws = make_workspace(standins)
    ComputeInstance(ws, "ci-x").stop()

    (stop,) = standins.records(service="arm", method="POST", path_regex=r"/stop$")
    assert stop.header("Authorization").startswith("Bearer ")
    status_url = stop.response_headers["Azure-AsyncOperation"]
    assert status_url.startswith("https://management.azure.com/subscriptions/")
    assert "Location" in stop.response_headers
    headers = ws._auth.get_authentication_header()
    assert requests.get(status_url, headers=headers, timeout=5).json()["status"] == "InProgress"
    assert wait_for(lambda: a.instance("ci-x") == "Stopped")
    assert requests.get(status_url, headers=headers, timeout=5).json()["status"] == "Succeeded"


def test_token_is_a_jwt_for_the_tenant(standins):
    make_workspace(standins)
    (token_call,) = standins.records(service="aad", method="POST")
    assert "grant_type=client_credentials" in token_call.body.decode()
    token = json.loads(token_call.response_body)["access_token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["tid"] == standins.azureml.tenant_id
    assert claims["aud"] == "https://management.core.windows.net/"  # the ARM resource azureml asks for
    assert claims["exp"] > time.time() + 600


def test_stop_on_stopped_instance_raises_without_post(standins):
    standins.azureml.seed("ci-off", state="Stopped")
    ws = make_workspace(standins)
    with pytest.raises(ComputeTargetException, match=r"current state \(Stopped\) does not support Stop"):
        ComputeInstance(ws, "ci-off").stop()
    assert standins.count(method="POST", path_regex=r"/stop$") == 0
    assert standins.azureml.instance("ci-off") == "Stopped"


def test_stop_on_stopping_instance_gets_409(standins, monkeypatch):
    monkeypatch.setattr(standins.azureml, "stop_delay", 30)
    standins.azureml.seed("ci-busy")
    ci = ComputeInstance(make_workspace(standins), "ci-busy")
    ci.stop()
    with pytest.raises(ComputeTargetException, match="Response Code: 409") as exc:
        ci.stop()
    assert "already an active operation" in str(exc.value)
    assert standins.stopped_names() == ["ci-busy"]


def test_wrong_secret_raises_authentication_error_with_aadsts(standins):
    with pytest.raises(AuthenticationError) as exc:
        make_workspace(standins, secret="not-the-secret")
    assert "AADSTS7000215: Invalid client secret provided" in str(exc.value)
    assert standins.count(service="aad", method="POST", status=401) == 1
    assert standins.count(service="arm") == 0


def test_unknown_tenant_raises_value_error(standins):
    with pytest.raises(
        ValueError,
        match=r"Unable to get authority configuration for https://login\.microsoftonline\.com/00000000-dead",
    ):
        make_workspace(standins, tenant="00000000-dead-beef-0000-000000000000")
    (call,) = standins.records(service="aad")
    assert call.status == 400
    assert "AADSTS90002" in call.response_body.decode()


def test_unknown_workspace_raises_project_system_exception(standins):
    with pytest.raises(ProjectSystemException, match="Workspace not found"):
        make_workspace(standins, name="no-such-ws")
    (call,) = standins.records(service="arm", path_regex=r"/workspaces/no-such-ws$")
    assert call.status == 404
    assert json.loads(call.response_body)["error"]["code"] == "ResourceNotFound"


def test_unknown_compute_raises_not_found(standins):
    ws = make_workspace(standins)
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        ComputeInstance(ws, "no-such-ci")
    assert standins.count(service="azureml", path_regex=r"/computes/no-such-ci$", status=404) == 1


def test_429_on_stop_surfaces_with_retry_after_and_no_retry(standins):
    standins.azureml.seed("ci-1")
    ci = ComputeInstance(make_workspace(standins), "ci-1")
    fault = standins.add_fault(
        service="arm", method="POST", path_regex=r"/stop$", status=429, headers={"Retry-After": "17"}, times=1
    )
    started = time.monotonic()
    with pytest.raises(ComputeTargetException) as exc:
        ci.stop()
    assert time.monotonic() - started < 5
    text = str(exc.value)
    assert "Received bad response from Resource Provider" in text
    assert "Response Code: 429" in text
    assert "'Retry-After': '17'" in text
    assert fault.hits == 1
    assert standins.count(method="POST", path_regex=r"/stop$") == 1
    assert standins.azureml.instance("ci-1") == "Running"
    ci.stop()  # the fault is spent
    assert standins.stopped_names() == ["ci-1"]


@pytest.mark.parametrize(
    ("service", "method", "path_regex", "expected"),
    [
        ("arm", "POST", r"/stop$", "Received bad response from Resource Provider"),
        ("azureml", "GET", r"/computes$", "Error occurred retrieving targets"),
    ],
    ids=["stop", "list"],
)
def test_500_surfaces_as_compute_target_exception(standins, service, method, path_regex, expected):
    standins.azureml.seed("ci-1")
    ws = make_workspace(standins)
    ci = ComputeInstance(ws, "ci-1")
    standins.add_fault(service=service, method=method, path_regex=path_regex, status=500)
    with pytest.raises(ComputeTargetException) as exc:
        ci.stop() if method == "POST" else ComputeTarget.list(ws)
    assert expected in str(exc.value)
    assert "Response Code: 500" in str(exc.value)
    assert standins.count(service=service, method=method, path_regex=path_regex) == 1  # no retries


def test_500_on_a_later_page_of_the_list(standins, monkeypatch):
    monkeypatch.setattr(standins.azureml, "page_size", 1)
    standins.azureml.seed("ci-1")
    standins.azureml.seed("ci-2")
    ws = make_workspace(standins)
    standins.add_fault(service="azureml", method="GET", path_regex=r"/computes$", status=500, skip=1)
    with pytest.raises(ComputeTargetException, match="while retrieving paginated results") as exc:
        ComputeTarget.list(ws)
    assert "Response Code: 500" in str(exc.value)
    pages = standins.records(service="azureml", path_regex=r"/computes$")
    assert [(p.query.get("$skipToken"), p.status) for p in pages] == [(None, 200), ("1", 500)]


def test_arm_and_regional_calls_need_an_issued_bearer_token(standins):
    standins.azureml.seed("ci-1")
    ws = make_workspace(standins)
    url = f"https://management.azure.com{standins.azureml.workspace_arm_id}?api-version=2022-05-01"
    assert requests.get(url, timeout=5).status_code == 401
    bogus = requests.get(url, headers={"Authorization": "Bearer abc.def.ghi"}, timeout=5)
    assert bogus.status_code == 401
    assert bogus.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert requests.get(url, headers=ws._auth.get_authentication_header(), timeout=5).status_code == 200

    standins.azureml.revoke_tokens()  # e.g. expired mid-run: the SDK keeps using its cached token
    with pytest.raises(ComputeTargetException, match="Response Code: 401"):
        ComputeTarget.list(ws)


def test_connection_refused_raises_requests_proxy_error(standins, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTPS_PROXY", dead)
    monkeypatch.setenv("https_proxy", dead)
    with pytest.raises(requests.exceptions.ProxyError) as exc:
        make_workspace(standins)
    assert isinstance(exc.value, requests.exceptions.ConnectionError)
    assert "Connection refused" in str(exc.value)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        sendgrid.SendGridAPIClient(standins.sendgrid.api_key).send(a_mail())


def test_dropped_connection_raises_connection_error(standins):
    standins.azureml.seed("ci-1")
    ws = make_workspace(standins)
    standins.add_fault(service="azureml", path_regex=r"/computes$", drop=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError, match="Remote end closed connection"):
        ComputeTarget.list(ws)
    assert [c.name for c in ComputeTarget.list(ws)] == ["ci-1"]


# --------------------------------------------------------------------------- server, proxy, faults
def test_unknown_host_gets_404_and_is_logged(standins):
    resp = requests.get("https://dc.services.visualstudio.com/v2/track", timeout=5)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "NoStandIn"
    (rec,) = standins.records(service="unknown")
    assert (rec.host, rec.path, rec.status) == ("dc.services.visualstudio.com", "/v2/track", 404)
    assert "dc.services.visualstudio.com:443" in standins.proxy.connects


def test_proxy_refuses_anything_but_connect(standins):
    resp = requests.get("http://example.org/", proxies={"http": standins.proxy_url}, timeout=5)
    assert resp.status_code == 405


def test_latency_and_max_in_flight(standins):
    url = f"https://{standins.azureml.regional_host}/discovery"
    standins.latency = 0.3
    started = time.monotonic()
    threads = [threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 5}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.3 <= time.monotonic() - started < 1.2  # concurrent, not 4 x 0.3 s
    assert standins.count(path_regex="/discovery$", status=200) == 4
    assert standins.max_in_flight(path_regex="/discovery$") == 4

    standins.traffic.clear_log()
    for _ in range(2):
        requests.get(url, timeout=5)
    assert standins.max_in_flight(service="azureml") == 1
    assert all(r.duration >= 0.3 for r in standins.log)


def test_fault_times_delay_and_default_bodies(standins):
    url = f"https://{standins.azureml.regional_host}/discovery"
    slow = standins.add_fault(service="azureml", delay=0.2, times=1)
    flaky = standins.add_fault(
        service="azureml",
        method="GET",
        path_regex="^/discovery$",
        status=503,
        headers={"Retry-After": "2"},
        times=2,
    )
    first = requests.get(url, timeout=5)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert first.json()["error"]["code"] == "ServiceUnavailable"
    assert requests.get(url, timeout=5).status_code == 503
    assert requests.get(url, timeout=5).status_code == 200
    assert (slow.hits, flaky.hits) == (1, 2)
    assert standins.log[0].duration >= 0.2
    assert [r.fault for r in standins.log] == [True, True, False]

    standins.add_fault(service="azureml", status=418, body={"custom": True}, times=1)
    assert requests.get(url, timeout=5).json() == {"custom": True}


# --------------------------------------------------------------------------- sendgrid
def test_sendgrid_send_is_accepted_and_recorded(standins):
    resp = sendgrid.SendGridAPIClient(standins.sendgrid.api_key).send(a_mail("carol@contoso.com"))
    assert resp.status_code == 202
    assert resp.headers["X-Message-Id"] == standins.sendgrid.message_ids[0]
    (mail,) = standins.sendgrid.outbox
    assert mail["personalizations"][0]["to"] == [{"email": "carol@contoso.com"}]
    assert standins.sendgrid.mails_to("Carol@Contoso.com") == [mail]
    assert "keep it" in standins.sendgrid.content_of(mail)
    assert standins.count(service="sendgrid", method="POST", status=202) == 1


def test_sendgrid_outbox_dir_gets_json_and_browsable_html(standins, monkeypatch, tmp_path):
    monkeypatch.setattr(standins.sendgrid, "outbox_dir", tmp_path)
    client = sendgrid.SendGridAPIClient(standins.sendgrid.api_key)
    client.send(a_mail("dave@contoso.com"))
    client.send(a_mail("erin@contoso.com", plain_text_content="a < b & https://example.org/x"))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 4
    assert files[0].endswith("-0001-dave@contoso.com.html") and files[1].endswith(
        "-0001-dave@contoso.com.json"
    )
    assert files[2].endswith("-0002-erin@contoso.com.html") and files[3].endswith(
        "-0002-erin@contoso.com.json"
    )
    html_page = (tmp_path / files[0]).read_text()
    assert html_page == '<p>Hello <a href="https://example.org/keep?t=1">keep it</a></p>'
    assert "<pre>a &lt; b &amp; https://example.org/x</pre>" in (tmp_path / files[2]).read_text()
    assert json.loads((tmp_path / files[3]).read_text())["subject"] == "Your compute"


def test_sendgrid_wrong_key_is_unauthorized(standins):
    with pytest.raises(UnauthorizedError) as exc:
        sendgrid.SendGridAPIClient("SG.wrong").send(a_mail())
    assert exc.value.status_code == 401
    assert json.loads(exc.value.body) == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert standins.sendgrid.outbox == []


def test_sendgrid_schema_violations_are_all_listed(standins):
    sg = sendgrid.SendGridAPIClient(standins.sendgrid.api_key)
    body = {"personalizations": [{"to": [{"email": "not-an-email"}]}], "subject": 3}
    with pytest.raises(BadRequestsError) as exc:
        sg.client.mail.send.post(request_body=body)
    errors = json.loads(exc.value.body)["errors"]
    assert {e["field"] for e in errors} == {"from", "content", "personalizations.0.to.0.email", "subject"}
    assert all(e["help"] is None and e["message"] for e in errors)
    assert standins.sendgrid.outbox == []


@pytest.mark.parametrize(("status", "exc_type"), [(403, ForbiddenError), (500, InternalServerError)])
def test_sendgrid_injected_errors(standins, status, exc_type):
    standins.add_fault(service="sendgrid", status=status, times=1)
    with pytest.raises(exc_type) as exc:
        sendgrid.SendGridAPIClient(standins.sendgrid.api_key).send(a_mail())
    assert exc.value.status_code == status
    assert json.loads(exc.value.body)["errors"][0]["message"]
    assert standins.sendgrid.outbox == []


# --------------------------------------------------------------------------- azure-cosmosdb-table
def table_service(azurite):
    service = TableService(connection_string=azurite.connection_string)
    service.retry = no_retry  # default ExponentialRetry needs ~60 s to give up on a dead endpoint
    return service


def test_table_crud_against_azurite(azurite):
    ts = table_service(azurite)
    assert ts.create_table("shutdowns") is True
    ts.insert_entity("shutdowns", {"PartitionKey": "2024-06-01", "RowKey": "ci-1", "owner": "alice"})
    with pytest.raises(AzureConflictHttpError) as exc:
        ts.insert_entity("shutdowns", {"PartitionKey": "2024-06-01", "RowKey": "ci-1", "owner": "bob"})
    assert exc.value.status_code == 409
    assert "EntityAlreadyExists" in str(exc.value)
    rows = list(ts.query_entities("shutdowns", filter="PartitionKey eq '2024-06-01'"))
    assert [(r["RowKey"], r["owner"]) for r in rows] == [("ci-1", "alice")]


def test_azurite_down_raises_quickly_without_retry_and_restarts(azurite):
    ts = table_service(azurite)
    ts.create_table("shutdowns")
    azurite.stop()
    started = time.monotonic()
    with pytest.raises(AzureException) as exc:
        ts.get_entity("shutdowns", "p", "r")
    assert time.monotonic() - started < 2
    assert not isinstance(exc.value, AzureHttpError)  # no HTTP status: nothing answered
    assert "Connection refused" in str(exc.value)

    azurite.start()
    assert ts.exists("shutdowns") is False  # in-memory: a restart starts empty
    assert ts.create_table("shutdowns") is True


def test_azureml_calls_have_no_client_timeout(standins):
    """Documents a hazard: neither azureml-core nor MSAL pass a timeout, and the process-wide socket
    default does not apply to requests either, so a hanging endpoint blocks the caller indefinitely."""
    standins.azureml.seed("ci-1")
    ws = make_workspace(standins)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.1)
    try:
        standins.add_fault(service="azureml", path_regex=r"/computes$", delay=0.6, times=1)
        started = time.monotonic()
        assert [c.name for c in ComputeTarget.list(ws)] == ["ci-1"]
        assert time.monotonic() - started >= 0.6
    finally:
        socket.setdefaulttimeout(previous)


def test_env_sets_exactly_the_routing_variables_children_are_cleaned_of(standins):
    from loopback.stack import ROUTING_ENV, environ_without_routing

    assert set(standins.env) == set(ROUTING_ENV)
    assert environ_without_routing({**standins.env, "PATH": "/bin"}) == {"PATH": "/bin"}


# --------------------------------------------------------------------------- managed identity, ARM writes, connections
def identity_get(standins, headers=None, **params):
    query = {"api-version": "2019-08-01", "resource": "https://management.azure.com", **params}
    headers = {"X-IDENTITY-HEADER": standins.identity.header} if headers is None else headers
    return requests.get(standins.identity.endpoint, params=query, headers=headers, timeout=5)


def test_identity_endpoint_answers_like_app_service(standins):
    standins.latency = 0.5  # a remote round trip; the identity endpoint is on the host itself
    started = time.monotonic()
    ok = identity_get(standins)
    assert time.monotonic() - started < 0.4
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str) and int(body["expires_on"]) > time.time() + 3600
    assert (body["resource"], body["token_type"]) == ("https://management.azure.com", "Bearer")
    assert body["client_id"] == standins.identity.system_client_id
    payload = body["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["oid"] == standins.identity.system_object_id
    assert claims["aud"] == "https://management.azure.com"
    assert claims["tid"] == standins.azureml.tenant_id

    assert identity_get(standins, headers={}).status_code == 401
    assert identity_get(standins, headers={"X-IDENTITY-HEADER": "guessed"}).status_code == 401
    assert identity_get(standins, **{"api-version": "2017-09-01"}).status_code == 400
    assert identity_get(standins, resource="").status_code == 400
    unknown = identity_get(standins, client_id="0badc0de-0000-4000-8000-000000000000")
    assert unknown.status_code == 400
    assert unknown.json()["message"] == "Unable to load the proper Managed Identity."
    user = identity_get(standins, client_id=standins.identity.user_assigned[0])
    assert user.json()["client_id"] == standins.identity.user_assigned[0]
    assert [r.status for r in standins.records(service="identity")] == [200, 401, 401, 400, 400, 400, 200]
    assert standins.identity.endpoint.startswith("http://127.0.0.1:")
    assert "127.0.0.1" in standins.env["NO_PROXY"].split(",")  # reached directly, not through the proxy


def test_managed_identity_credential_gets_tokens_arm_accepts(standins, monkeypatch):
    from azure.identity import ManagedIdentityCredential

    for name, value in standins.identity_env.items():
        monkeypatch.setenv(name, value)
    url = f"https://management.azure.com{standins.azureml.workspace_arm_id}?api-version=2024-10-01"
    system = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    user = ManagedIdentityCredential(client_id=standins.identity.user_assigned[0]).get_token(
        "https://management.azure.com/.default"
    )
    for token in (system, user):
        headers = {"Authorization": f"Bearer {token.token}"}
        assert requests.get(url, headers=headers, timeout=5).status_code == 200
    assert standins.count(service="identity", status=200) == 2
    # No CONNECT for the identity endpoint: it is reached directly.
    assert standins.proxy.connects == ["management.azure.com:443"] * 2

    standins.azureml.revoke_tokens()
    revoked = requests.get(url, headers={"Authorization": f"Bearer {system.token}"}, timeout=5)
    assert revoked.status_code == 401


def test_arm_refuses_a_token_for_another_resource(standins, monkeypatch):
    from azure.identity import ManagedIdentityCredential

    for name, value in standins.identity_env.items():
        monkeypatch.setenv(name, value)
    vault = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    url = f"https://management.azure.com{standins.azureml.workspace_arm_id}?api-version=2024-10-01"
    answer = requests.get(url, headers={"Authorization": f"Bearer {vault.token}"}, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_arm_write_bucket_throttles_writes_per_principal(standins, monkeypatch):
    from azure.identity import ManagedIdentityCredential

    a = standins.azureml
    for name in ("ci-1", "ci-2", "ci-3", "ci-4"):
        a.seed(name)
    standins.enforce_write_bucket(capacity=3, refill_per_second=0.5)
    ws = make_workspace(standins)
    sp = ws._auth.get_authentication_header()
    stop = f"https://management.azure.com{a.workspace_arm_id}/computes/{{}}/stop?api-version=2024-10-01"

    answers = [requests.post(stop.format(n), headers=sp, timeout=5) for n in ("ci-1", "ci-2", "ci-1", "ci-3")]
    assert [r.status_code for r in answers] == [202, 202, 409, 429]  # a refused write is a write too
    remaining = [r.headers["x-ms-ratelimit-remaining-subscription-writes"] for r in answers]
    assert remaining == ["2", "1", "0", "0"]
    assert answers[3].headers["Retry-After"] == "2"
    assert answers[3].json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert a.instance("ci-3") == "Running"
    computes = f"https://management.azure.com{a.workspace_arm_id}/computes?api-version=2024-10-01"
    assert requests.get(computes, headers=sp, timeout=5).status_code == 200  # reads are not writes

    for name, value in standins.identity_env.items():  # another principal has a bucket of its own
        monkeypatch.setenv(name, value)
    mi = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    other = requests.post(stop.format("ci-3"), headers={"Authorization": f"Bearer {mi.token}"}, timeout=5)
    assert other.status_code == 202

    standins.reset()  # off again
    a.seed("ci-4")
    assert requests.post(stop.format("ci-4"), headers=sp, timeout=5).status_code == 202


def test_connection_cost_is_paid_once_per_connection_and_connections_are_counted(standins):
    url = f"https://{standins.azureml.regional_host}/discovery"
    standins.connection_cost = 0.3
    with requests.Session() as session:
        started = time.monotonic()
        session.get(url, timeout=5)
        first = time.monotonic() - started
        started = time.monotonic()
        session.get(url, timeout=5)
        again = time.monotonic() - started
    assert first >= 0.3 > again  # the second request reuses the connection
    assert standins.connections == 1
    requests.get(url, timeout=5)  # no session: a new connection
    assert standins.connections == 2
    standins.reset()
    assert (standins.connections, standins.connection_cost) == (0, 0.0)


def test_loopback_servers_set_tcp_nodelay_and_a_normal_backlog():
    from loopback.proxy import ConnectProxy
    from loopback.server import StandInServer
    from loopback.table_gate import TableGate

    assert StandInServer.request_queue_size == ConnectProxy.request_queue_size == 128
    assert TableGate.request_queue_size == 128
    proxy = ConnectProxy(("127.0.0.1", 9))  # never started: accept by hand
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
            accepted, _ = proxy.get_request()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert proxy.accepted == 1
    finally:
        proxy.server_close()


def test_children_are_cleaned_of_the_identity_variables_too(standins):
    from loopback.stack import environ_without_routing

    assert set(standins.identity_env) == {"IDENTITY_ENDPOINT", "IDENTITY_HEADER"}
    assert environ_without_routing({**standins.identity_env, "PATH": "/bin"}) == {"PATH": "/bin"}


# --------------------------------------------------------------------------- many workspaces
OTHER_SUBSCRIPTION = "7d2e9f10-0000-4000-8000-00000000e57a"
DATA = Path(__file__).resolve().parents[2] / "loopback" / "data"


def arm_headers(standins) -> dict[str, str]:
    a = standins.azureml
    return ServicePrincipalAuthentication(
        a.tenant_id, a.client_id, a.client_secret
    ).get_authentication_header()


def arm_pages(url, headers) -> list[dict]:
    """Every item of an ARM listing, every nextLink followed."""
    items = []
    while url:
        page = requests.get(url, headers=headers, timeout=5)
        assert page.status_code == 200, page.text
        items += page.json()["value"]
        url = page.json().get("nextLink")
    return items


def test_several_workspaces_over_azureml_core_sign_in_once(standins):
    a = standins.azureml
    twin = a.add_workspace(a.subscription_id, "rg-twin", a.workspace)  # the same name, another group
    east = a.add_workspace(OTHER_SUBSCRIPTION, "rg-east", "ws-east", region="eastus")
    a.seed("ci-home")
    twin.seed("ci-twin", created_by="tess@contoso.com")
    east.seed("ci-east", created_by="erin@contoso.com")
    east.seed("ci-east-2", state="Stopped")
    auth = ServicePrincipalAuthentication(a.tenant_id, a.client_id, a.client_secret)  # one for all three

    listed = {}
    for handle in (a.default_workspace, twin, east):
        ws = Workspace(handle.subscription_id, handle.resource_group, handle.name, auth=auth)
        computes = {c.name: c for c in ComputeTarget.list(ws)}
        listed[handle.resource_group] = sorted(computes)
        running = [c for c in computes.values() if c.status.state == "Running"]
        for compute in running:
            compute.stop()

    assert listed == {
        a.resource_group: ["ci-home"],
        "rg-twin": ["ci-twin"],
        "rg-east": ["ci-east", "ci-east-2"],
    }
    assert (a.stopped_names(), twin.stopped_names(), east.stopped_names()) == (
        ["ci-home"],
        ["ci-twin"],
        ["ci-east"],
    )
    assert east.instance("ci-east") in ("Stopping", "Stopped") and east.instance("ci-east-2") == "Stopped"
    assert twin.compute("ci-twin").created_by == "tess@contoso.com"
    with pytest.raises(KeyError):
        twin.instance("ci-home")
    # azureml-core caches the token on the auth object, for every workspace it opens with it.
    assert standins.count(service="aad", method="POST") == 1
    regional = [(r.host, r.path) for r in standins.records(service="azureml", path_regex=r"/computes$")]
    assert regional == [
        (f"{a.region}.api.azureml.ms", f"/rp/workspaces{handle.arm_id}/computes") for handle in (a.default_workspace, twin)
    ] + [("eastus.api.azureml.ms", f"/rp/workspaces{east.arm_id}/computes")]  # fmt: skip
    assert "eastus.api.azureml.ms:443" in standins.proxy.connects  # tunnelled, and its certificate trusted
    (east_stop,) = standins.records(service="arm", method="POST", path_regex=r"/ci-east/stop$")
    assert f"/subscriptions/{OTHER_SUBSCRIPTION}/" in east_stop.response_headers["Azure-AsyncOperation"]
    assert "/locations/eastus/" in east_stop.response_headers["Azure-AsyncOperation"]


def test_several_workspaces_over_arm_rest(standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "page_size", 1)
    twin = a.add_workspace(a.subscription_id, "rg-twin", a.workspace)
    east = a.add_workspace(OTHER_SUBSCRIPTION, "rg-east", "ws-east", region="eastus")
    for handle in (a.default_workspace, twin, east):
        for i in (1, 2):
            handle.seed(f"ci-{handle.resource_group}-{i}")
    headers = arm_headers(standins)
    arm = "https://management.azure.com"

    for handle in (a.default_workspace, twin, east):
        computes = arm_pages(f"{arm}{handle.arm_id}/computes?api-version=2025-04-01", headers)
        assert [c["id"] for c in computes] == [
            handle.compute_arm_id(f"ci-{handle.resource_group}-{i}") for i in (1, 2)
        ]
        assert {c["location"] for c in computes} == {handle.region}
        stop = requests.post(
            f"{arm}{handle.arm_id}/computes/ci-{handle.resource_group}-1/stop?api-version=2025-04-01",
            headers=headers,
            timeout=5,
        )
        assert stop.status_code == 202
        status = requests.get(stop.headers["Azure-AsyncOperation"], headers=headers, timeout=5)
        assert status.status_code == 200 and status.json()["status"] in ("InProgress", "Succeeded")
    assert (a.stopped_names(), twin.stopped_names(), east.stopped_names()) == (
        [f"ci-{a.resource_group}-1"], ["ci-rg-twin-1"], ["ci-rg-east-1"]
    )  # fmt: skip
    assert twin.instances() == {"ci-rg-twin-1": "Stopping", "ci-rg-twin-2": "Running"}

    def get(path: str) -> requests.Response:
        return requests.get(f"{arm}{path}?api-version=2025-04-01", headers=headers, timeout=5)

    assert get(f"/subscriptions/{OTHER_SUBSCRIPTION}").json()["subscriptionId"] == OTHER_SUBSCRIPTION
    assert [s["subscriptionId"] for s in get("/subscriptions").json()["value"]] == [
        a.subscription_id,
        OTHER_SUBSCRIPTION,
    ]
    unknown_sub = "00000000-0000-4000-8000-00000000dead"
    answers = {
        "SubscriptionNotFound": get(f"/subscriptions/{unknown_sub}/resourceGroups/rg-east{RP}/ws-east"),
        "ResourceGroupNotFound": get(
            f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-twin{RP}/ws-east"
        ),
        "ResourceNotFound": get(
            f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-east{RP}/{a.workspace}"
        ),
    }
    assert {code: (r.status_code, r.json()["error"]["code"]) for code, r in answers.items()} == {
        code: (404, code) for code in answers
    }
    # Each region's API serves its own workspaces; an unused region is nobody's host.
    wrong = requests.get(
        f"https://eastus.api.azureml.ms/rp/workspaces{twin.arm_id}/computes", headers=headers, timeout=5
    )
    assert wrong.status_code == 404
    assert (
        requests.get("https://brazilsouth.api.azureml.ms/discovery", timeout=5).json()["error"]["code"]
        == "NoStandIn"
    )
    assert (
        requests.get("https://eastus.api.azureml.ms/discovery", timeout=5).json()["api"]
        == "https://eastus.api.azureml.ms"
    )

    standins.reset()  # the added workspaces go, the default stays
    assert get(f"/subscriptions/{OTHER_SUBSCRIPTION}").status_code == 404
    assert a.workspaces() == [a.default_workspace] and a.instances() == {}


def test_workspace_listings_by_subscription_and_resource_group_page_like_arm(standins, monkeypatch):
    a = standins.azureml
    monkeypatch.setattr(a, "workspace_page_size", 2)
    same_group = a.add_workspace(a.subscription_id, a.resource_group, "ws-b")
    twin = a.add_workspace(a.subscription_id, "rg-two", a.workspace)
    north = a.add_workspace(a.subscription_id, "rg-two", "ws-north", region="northeurope")
    east = a.add_workspace(OTHER_SUBSCRIPTION, "rg-east", "ws-east", region="eastus")
    headers = arm_headers(standins)
    listing = "https://management.azure.com/subscriptions/{}{}/providers/Microsoft.MachineLearningServices/workspaces"

    by_subscription = arm_pages(listing.format(a.subscription_id, "") + "?api-version=2025-04-01", headers)
    assert [w["id"] for w in by_subscription] == [
        h.arm_id for h in (a.default_workspace, same_group, twin, north)
    ]
    pages = standins.records(service="arm", path_regex=r"/workspaces$")
    assert [(p.query.get("$skipToken"), p.query["api-version"]) for p in pages] == [
        (None, "2025-04-01"),
        ("2", "2025-04-01"),
    ]
    group = (
        listing.format(a.subscription_id, "/resourceGroups/RG-TWO") + "?api-version=2025-04-01"
    )  # any case
    assert [w["id"] for w in arm_pages(group, headers)] == [twin.arm_id, north.arm_id]
    other = arm_pages(listing.format(OTHER_SUBSCRIPTION, "") + "?api-version=2025-04-01", headers)
    assert [(w["id"], w["name"], w["location"]) for w in other] == [(east.arm_id, "ws-east", "eastus")]

    # Each item has every field of the official examples, at the top and in its properties.
    for example, items in (
        ("listBySubscription", by_subscription),
        ("listByResourceGroup", arm_pages(group, headers)),
    ):
        spec = json.loads((DATA / f"Workspace-{example}.json").read_text())["responses"]["200"]["body"]
        assert set(spec) == {"value", "nextLink"} and len(spec["value"]) == 2
        for item in items:
            for model in spec["value"]:
                assert set(model) <= set(item) and set(model["properties"]) <= set(item["properties"])
                assert item["type"] == model["type"] == "Microsoft.MachineLearningServices/workspaces"

    def status(url: str) -> tuple[int, str]:
        answer = requests.get(url, headers=headers, timeout=5)
        return answer.status_code, answer.json()["error"]["code"]

    unknown = "00000000-0000-4000-8000-00000000dead"
    assert status(listing.format(unknown, "") + "?api-version=2025-04-01") == (404, "SubscriptionNotFound")
    no_group = listing.format(a.subscription_id, "/resourceGroups/rg-nowhere") + "?api-version=2025-04-01"
    assert status(no_group) == (404, "ResourceGroupNotFound")
    assert status(listing.format(a.subscription_id, "")) == (400, "MissingApiVersionParameter")
    a.seed("ci-1")  # ARM answers nothing without an api-version, a write neither
    no_version = requests.post(
        f"https://management.azure.com{a.compute_arm_id('ci-1')}/stop", headers=headers, timeout=5
    )
    assert (no_version.status_code, no_version.json()["error"]["code"]) == (400, "MissingApiVersionParameter")
    assert a.instance("ci-1") == "Running"


def test_a_denied_workspace_answers_403_in_arms_words_and_a_removed_one_404(standins):
    a = standins.azureml
    none = a.add_workspace(a.subscription_id, "rg-x", "ws-no-role")
    read = a.add_workspace(a.subscription_id, "rg-x", "ws-read-only")
    reader = a.add_workspace(a.subscription_id, "rg-x", "ws-reader")
    gone = a.add_workspace(a.subscription_id, "rg-x", "ws-gone")
    for handle in (none, read, reader, gone):
        handle.seed("ci-1")
    a.deny(none)
    a.deny(read.arm_id, scope="computes")  # by ARM id, as an app would name it
    a.deny(reader, scope="writes")
    a.remove_workspace(gone)
    headers = arm_headers(standins)
    arm = "https://management.azure.com"

    def statuses(handle) -> tuple[int, int, int, int]:
        calls = (
            requests.get(f"{arm}{handle.arm_id}?api-version=2025-04-01", headers=headers, timeout=5),
            requests.get(f"{arm}{handle.arm_id}/computes?api-version=2025-04-01", headers=headers, timeout=5),
            requests.get(f"https://{handle.regional_host}/rp/workspaces{handle.arm_id}/computes", headers=headers, timeout=5),
            requests.post(f"{arm}{handle.arm_id}/computes/ci-1/stop?api-version=2025-04-01", headers=headers, timeout=5),
        )  # fmt: skip
        return tuple(answer.status_code for answer in calls)

    assert statuses(none) == (403, 403, 403, 403)
    assert statuses(read) == (200, 403, 403, 403)
    assert statuses(reader) == (200, 200, 200, 403)
    assert statuses(gone) == (404, 404, 404, 404)
    assert a.default_workspace.stopped_names() == [] and reader.instance("ci-1") == "Running"

    (refused,) = standins.records(method="POST", path_regex=r"/ws-reader/computes/ci-1/stop$")
    error = json.loads(refused.response_body)["error"]
    assert error["code"] == "AuthorizationFailed"
    assert error["message"].startswith(f"The client '{a.client_id}' with object id '")
    assert (
        "does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/computes/"
        f"stop/action' over scope '{reader.arm_id}/computes/ci-1' or the scope is invalid."
    ) in error["message"]
    (gone_get,) = standins.records(service="arm", path_regex=r"/ws-gone$")
    assert json.loads(gone_get.response_body)["error"]["code"] == "ResourceNotFound"

    # An identity sees in a listing what it may read: not the workspace it has no role on, nor a deleted one.
    listed = arm_pages(
        f"{arm}/subscriptions/{a.subscription_id}/resourceGroups/rg-x{RP}?api-version=2025-04-01", headers
    )
    assert [w["name"] for w in listed] == ["ws-read-only", "ws-reader"]

    # azureml-core: the workspace GET refused, or the regional compute list.
    auth = ServicePrincipalAuthentication(a.tenant_id, a.client_id, a.client_secret)
    with pytest.raises(ProjectSystemException, match="AuthorizationFailed"):
        Workspace(a.subscription_id, "rg-x", "ws-no-role", auth=auth)
    with pytest.raises(ComputeTargetException, match="Response Code: 403"):
        ComputeTarget.list(Workspace(a.subscription_id, "rg-x", "ws-read-only", auth=auth))

    with pytest.raises(ValueError, match="scope must be one of"):
        a.deny(reader, scope="everything")
    with pytest.raises(KeyError):
        a.deny(f"/subscriptions/{a.subscription_id}/resourceGroups/rg-x{RP}/ws-unknown")
    a.deny(a.default_workspace, status=404)
    assert (
        requests.get(
            f"{arm}{a.workspace_arm_id}?api-version=2025-04-01", headers=headers, timeout=5
        ).status_code
        == 404
    )
    standins.reset()  # lifts denials and removals; the added workspaces are gone
    assert (
        requests.get(
            f"{arm}{a.workspace_arm_id}?api-version=2025-04-01", headers=headers, timeout=5
        ).status_code
        == 200
    )
    assert a.add_workspace(a.subscription_id, "rg-x", "ws-gone").instances() == {}


def test_arm_write_buckets_are_per_subscription(standins):
    a = standins.azureml
    east = a.add_workspace(OTHER_SUBSCRIPTION, "rg-east", "ws-east", region="eastus")
    twin = a.add_workspace(a.subscription_id, "rg-twin", "ws-twin")
    for handle in (a.default_workspace, east, twin):
        for name in ("ci-1", "ci-2"):
            handle.seed(name)
    standins.enforce_write_bucket(capacity=2, refill_per_second=0.2)
    headers = arm_headers(standins)

    def stop(handle, name) -> requests.Response:
        url = f"https://management.azure.com{handle.arm_id}/computes/{name}/stop?api-version=2025-04-01"
        return requests.post(url, headers=headers, timeout=5)

    home = [stop(a.default_workspace, "ci-1"), stop(twin, "ci-1"), stop(twin, "ci-2")]  # one subscription
    away = [stop(east, "ci-1"), stop(east, "ci-2")]  # the same principal, another subscription

    assert [r.status_code for r in home] == [202, 202, 429]
    assert [r.status_code for r in away] == [202, 202]
    assert [r.headers["x-ms-ratelimit-remaining-subscription-writes"] for r in away] == ["1", "0"]
    throttled = home[2].json()["error"]
    assert throttled["code"] == "SubscriptionRequestsThrottled"
    assert f"'write' requests for subscription '{a.subscription_id}' actor '" in throttled["message"]
    assert home[2].headers["Retry-After"] == "5"
    assert (twin.stopped_names(), east.stopped_names()) == (["ci-1"], ["ci-1", "ci-2"])
