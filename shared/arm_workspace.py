"""The Azure ML workspace over plain ARM REST: list compute instances, stop one.

No Azure ML SDK: one pooled `requests.Session` per adapter (that is, per run) and an azure-identity
credential (`ClientSecretCredential`, `ManagedIdentityCredential`, any `TokenCredential`) passed in.
One token for `https://management.azure.com/.default` is fetched on first use and reused until five
minutes before it expires, so a run signs in once; the pooled keep-alive connections are reused by
the listing and every stop, so a run opens about as many TLS connections as it has parallel stops.

- List: `GET .../workspaces/{ws}/computes`, every `nextLink` followed; only `ComputeInstance`s kept.
- Stop: `POST .../computes/{name}/stop`; 200/202 is STOPPED (the stop runs on in Azure; we do not
  wait for it), 409 (stopped or stopping already, another operation in progress) is NOT_RUNNING.
  There is no read before the stop: `shared.stopping` sends a stop only while the listing that said
  Running is fresh, and this adapter holds to the same rule while it waits for ARM's write bucket
  (`shared.arm_pacing`): a stop whose turn would come after its listing went stale is not sent
  (STALE, so the sweep lists again).
- Errors are ours (shared.errors): 401/403 and refused sign-ins are CredentialsError naming the
  settings to check; 404 NotFoundError naming the workspace settings; 408, 429 and 5xx, timeouts and
  broken connections TransientServiceError with the server's Retry-After (seconds or HTTP date).
  Nothing here retries: shared.retry.RetryPolicy decides, once.

This module must never import azureml-core (nor shared.azureml_workspace, which does).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import requests
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from requests.adapters import HTTPAdapter

from .arm_pacing import ARM_WRITE_CAPACITY, ARM_WRITES_PER_SECOND, WRITE_HEADROOM, WriteBucket
from .domain import Instance, StopOutcome
from .errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from .retry import retry_after_seconds
from .stopping import FRESH_FOR

SERVICE = "AzureML"
ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
# The Microsoft.MachineLearningServices GA version the spec repository's readme names as its default
# (stable/2025-04-01): computes list and stop have the same shape as in every GA version since 2021.
API_VERSION = "2025-04-01"
TIMEOUT = (5.0, 30.0)  # connect, read (seconds): a hung call fails instead of eating the run's budget
POOL_SIZE = 64  # >= the largest max_parallel; connections are opened on demand, idle ones kept
TOKEN_MARGIN = 300.0  # fetch a new token this long before the current one expires
REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"

SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
MI_SETTINGS = (
    "managed_identity_client_id",
    "the Function App's managed identity and its role on the workspace",
)
WORKSPACE_SETTINGS = ("subscription_id", "resource_group", "aml_workspace")

# Azure AD error codes -> the App Settings that most likely hold the mistake. A copy of the table in
# azureml_workspace.py, which cannot be imported here: it imports azureml-core.
AAD_CODES = {
    "AADSTS7000215": ("service_principal_password",),  # invalid client secret
    "AADSTS7000222": ("service_principal_password",),  # client secret expired
    "AADSTS700016": ("service_principal_id", "tenant_id"),  # application not found in tenant
    "AADSTS90002": ("tenant_id",),  # tenant not found
}


class ArmWorkspace:
    """The `ComputeWorkspace` port over ARM. Build one per run; it is safe to share between threads.

    `credential_settings` names the App Settings behind `credential`, for error messages
    (SP_SETTINGS for a service principal, MI_SETTINGS for the managed identity).
    `write_bucket` paces the stops (by default ARM's bucket less `WRITE_HEADROOM`); `clock`
    (`time.monotonic`) only times how fresh a listing is.
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        credential,
        *,
        credential_settings: tuple[str, ...] = MI_SETTINGS,
        endpoint: str = ARM_ENDPOINT,
        api_version: str = API_VERSION,
        timeout: tuple[float, float] = TIMEOUT,
        pool_size: int = POOL_SIZE,
        write_bucket: WriteBucket | None = None,
        clock=time.monotonic,
    ):
        self._credential = credential
        self._credential_settings = tuple(credential_settings)
        self._endpoint = endpoint.rstrip("/")
        self._api_version = api_version
        self._timeout = timeout
        self._computes_url = (
            f"{self._endpoint}/subscriptions/{quote(subscription_id, safe='')}"
            f"/resourceGroups/{quote(resource_group, safe='')}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{quote(workspace, safe='')}/computes"
        )
        self._bucket = write_bucket or WriteBucket(ARM_WRITE_CAPACITY - WRITE_HEADROOM, ARM_WRITES_PER_SECOND)
        self._clock = clock
        self._session = requests.Session()
        pooled = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", pooled)
        self._session.mount("http://", pooled)
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._listed_at: dict[str, float] = {}  # instance name (lower case) -> when its listing began

    # ------------------------------------------------------------------ the port
    def list_instances(self) -> list[Instance]:
        started = self._clock()
        what = "listing compute instances"
        instances = [
            _instance(compute)
            for compute in self._pages(what)
            if (compute.get("properties") or {}).get("computeType") == "ComputeInstance"
        ]
        self._listed_at.update({instance.name.lower(): started for instance in instances})
        return instances

    def stop(self, name: str) -> StopOutcome:
        what = f"stopping {name}"
        listed_at = self._listed_at.get(name.lower())
        fresh_for = None if listed_at is None else listed_at + FRESH_FOR - self._clock()
        if (fresh_for is not None and fresh_for < 0) or not self._bucket.take(fresh_for):
            return StopOutcome.STALE  # its turn in ARM's write bucket comes after its listing went stale
        response = self._call("POST", f"{self._computes_url}/{quote(name, safe='')}/stop", what)
        remaining = response.headers.get(REMAINING_WRITES, "")
        if remaining.strip().isdigit():
            self._bucket.observe_remaining(int(remaining))
        if response.status_code in (200, 202):
            return StopOutcome.STOPPED
        if response.status_code == 409:  # stopped or stopping already, or another operation under way
            return StopOutcome.NOT_RUNNING
        raise self._http_error(response, what)

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ HTTP
    def _pages(self, what: str) -> Iterator[dict]:
        url: str | None = f"{self._computes_url}?api-version={quote(self._api_version)}"
        while url:
            response = self._call("GET", url, what)
            if response.status_code != 200:
                raise self._http_error(response, what)
            try:
                page = response.json()
                values = page.get("value") or []
            except (ValueError, AttributeError) as error:
                raise ServiceError(SERVICE, f"{what}: unreadable answer from ARM") from error
            yield from (compute for compute in values if isinstance(compute, dict))
            url = page.get("nextLink") or None
            if url and not _same_origin(url, self._endpoint):
                # The bearer token goes to ARM only, whatever a page says.
                raise ServiceError(SERVICE, f"{what}: ARM sent a nextLink to another host ({_host(url)})")

    def _call(self, method: str, url: str, what: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._bearer(what)}", "Accept": "application/json"}
        try:
            response = self._session.request(method, url, headers=headers, timeout=self._timeout)
            response.content  # noqa: B018 - read it all, so the connection goes back to the pool
        except requests.exceptions.Timeout as error:
            raise TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})") from error
        except requests.exceptions.ConnectionError as error:
            raise TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})") from error
        except requests.exceptions.RequestException as error:
            raise ServiceError(SERVICE, f"{what}: {type(error).__name__}") from error
        return response

    def _http_error(self, response: requests.Response, what: str) -> ServiceError:
        status = response.status_code
        detail = f"HTTP {status}{_arm_error(response)}"
        if status in (401, 403):
            return CredentialsError(SERVICE, f"{what}: access denied ({detail})", self._credential_settings)
        if status == 404:
            return NotFoundError(
                SERVICE, f"{what}: not found ({detail}) (check {', '.join(WORKSPACE_SETTINGS)})"
            )
        if status in (408, 429) or status >= 500:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return TransientServiceError(SERVICE, f"{what}: {detail}", retry_after)
        return ServiceError(SERVICE, f"{what}: {detail}")

    # ------------------------------------------------------------------ the token
    def _bearer(self, what: str) -> str:
        with self._token_lock:  # one sign-in at a time: the first caller fetches, the others reuse it
            if self._token is None or self._token_expires - time.time() < TOKEN_MARGIN:
                try:
                    access = self._credential.get_token(ARM_SCOPE)
                except Exception as error:
                    raise self._sign_in_error(error, what) from error
                self._token, self._token_expires = access.token, float(access.expires_on)
            return self._token

    def _sign_in_error(self, error: Exception, what: str) -> ServiceError:
        what = f"{what}: signing in to Azure AD"
        text = str(error)
        if isinstance(error, ServiceRequestError | ServiceResponseError):
            return TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})")
        if not isinstance(error, ClientAuthenticationError):
            return ServiceError(SERVICE, f"{what}: {type(error).__name__}: {_first_line(text)}")
        aad = re.search(r"AADSTS\d+", text)
        if aad:
            settings = AAD_CODES.get(aad.group(0), self._credential_settings)
            return CredentialsError(
                SERVICE, f"{what}: Azure AD refused to sign in ({aad.group(0)})", settings
            )
        if "Unable to get authority configuration" in text:
            return CredentialsError(SERVICE, f"{what}: Azure AD does not know the tenant", ("tenant_id",))
        status = _sign_in_status(error)
        if status is not None and (status in (408, 429) or status >= 500):
            retry_after = None
            response = getattr(error, "response", None)
            if response is not None:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return TransientServiceError(SERVICE, f"{what}: HTTP {status}", retry_after)
        return CredentialsError(SERVICE, f"{what}: refused ({_first_line(text)})", self._credential_settings)


def _instance(compute: dict) -> Instance:
    properties = compute.get("properties") or {}
    inner = properties.get("properties") or {}
    created_by = inner.get("createdBy") or {}
    tags = compute.get("tags") or {}
    return Instance(
        name=str(compute.get("name", "")),
        state=str(inner.get("state") or properties.get("provisioningState") or "Unknown"),
        owner=created_by.get("userName") or None,
        tags=tuple((str(k), str(v)) for k, v in tags.items()) if isinstance(tags, dict) else (),
    )


def _arm_error(response: requests.Response) -> str:
    """`, Code: message` from an ARM error body, if it has one."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    code, message = error.get("code"), _first_line(str(error.get("message") or ""))
    return f", {code}: {message}" if code else ""


def _sign_in_status(error: Exception) -> int | None:
    """The HTTP status of a failed token request, as azure-identity reports it: on the error, in MSAL's
    `HTTP Error: 503` (Azure AD), or as the identity endpoint's `statusCode` (`(invalid_scope) 500, ...`)."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return status
    match = re.search(r"HTTP Error:? (\d{3})", str(error)) or re.search(r"\) (\d{3}), ", str(error))
    return int(match.group(1)) if match else None


def _same_origin(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _host(url: str) -> str:
    return urlsplit(url).netloc or "?"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
