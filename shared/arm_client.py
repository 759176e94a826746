"""One Azure Resource Manager REST client per run, shared by every workspace and the workspace listing.

A run that manages many workspaces (aml_workspaces) still signs in once and opens few connections:
one pooled `requests.Session`, one token for `https://management.azure.com/.default` fetched on first
use and reused until five minutes before it expires (one sign-in at a time, under a lock), and one
write bucket per subscription (`bucket`), because ARM throttles writes per subscription and principal
(shared.arm_pacing). The credential is any azure-core `TokenCredential`: azure-identity's, or
azureml-core's auth object wrapped by shared.azureml_workspace.AzureMLAuthCredential.

Errors are ours (shared.errors, translated in shared.arm_errors), each naming what was being done
(`what`, which names the workspace or subscription); timeouts and broken connections are
TransientServiceError. A listing follows every `nextLink`, on ARM's origin only:
the bearer token goes to ARM and nowhere else. Nothing here retries: shared.retry.RetryPolicy decides.

This module must never import azureml-core (nor shared.azureml_workspace, which does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from .arm_errors import SERVICE, http_error, sign_in_error
from .arm_pacing import ARM_WRITE_CAPACITY, ARM_WRITES_PER_SECOND, WRITE_HEADROOM, WriteBucket
from .errors import ServiceError, TransientServiceError

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
PROVIDER = "/providers/Microsoft.MachineLearningServices"
# The Microsoft.MachineLearningServices GA version the spec repository's readme names as its default
# (stable/2025-04-01): workspaces list, computes list and stop have the same shape since 2021.
API_VERSION = "2025-04-01"
TIMEOUT = (5.0, 30.0)  # connect, read (seconds): a hung call fails instead of eating the run's budget
POOL_SIZE = 64  # >= the parallel calls of a run; connections are opened on demand, idle ones kept
TOKEN_MARGIN = 300.0  # fetch a new token this long before the current one expires

SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
MI_SETTINGS = (
    "managed_identity_client_id",
    "the Function App's managed identity and its role on the workspace",
)


def _arm_write_bucket(subscription_id: str) -> WriteBucket:
    """ARM's bucket less a headroom; the rate is read when the bucket is built (the benchmark sets it)."""
    return WriteBucket(ARM_WRITE_CAPACITY - WRITE_HEADROOM, ARM_WRITES_PER_SECOND)


def ml_path(subscription_id: str, resource_group: str | None = None) -> str:
    """`/subscriptions/{id}[/resourceGroups/{rg}]/providers/Microsoft.MachineLearningServices`, quoted."""
    path = f"/subscriptions/{quote(subscription_id, safe='')}"
    if resource_group is not None:
        path += f"/resourceGroups/{quote(resource_group, safe='')}"
    return path + PROVIDER


class ArmClient:
    """ARM over one pooled session and one token. Build one per run; it is safe to share between threads.

    `credential_settings` names the App Settings behind `credential`, for error messages (SP_SETTINGS
    for a service principal, MI_SETTINGS for the managed identity). `write_bucket(subscription_id)`
    builds a subscription's bucket on its first write (by default ARM's bucket less `WRITE_HEADROOM`).
    """

    def __init__(
        self,
        credential,
        *,
        credential_settings: tuple[str, ...] = MI_SETTINGS,
        endpoint: str = ARM_ENDPOINT,
        timeout: tuple[float, float] = TIMEOUT,
        pool_size: int = POOL_SIZE,
        write_bucket: Callable[[str], WriteBucket] = _arm_write_bucket,
    ):
        self._credential = credential
        self.credential_settings = tuple(credential_settings)
        self.endpoint = endpoint.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        pooled = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", pooled)
        self._session.mount("http://", pooled)
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._new_bucket = write_bucket
        self._buckets: dict[str, WriteBucket] = {}
        self._buckets_lock = threading.Lock()

    def bucket(self, subscription_id: str) -> WriteBucket:
        """The one write bucket of `subscription_id` for this run, shared by all its workspaces."""
        with self._buckets_lock:
            key = subscription_id.lower()  # ARM ids compare without case
            if key not in self._buckets:
                self._buckets[key] = self._new_bucket(subscription_id)
            return self._buckets[key]

    def call(self, method: str, url: str, what: str) -> requests.Response:
        """One request with the run's token; any HTTP status is returned, a failure to get one raised."""
        headers = {"Authorization": f"Bearer {self._bearer(what)}", "Accept": "application/json"}
        try:
            response = self._session.request(method, url, headers=headers, timeout=self._timeout)
            response.content  # noqa: B018 - read it all, so the connection goes back to the pool
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as error:
            raise TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})") from error
        except requests.exceptions.RequestException as error:
            raise ServiceError(SERVICE, f"{what}: {type(error).__name__}") from error
        return response

    def pages(self, url: str, what: str, not_found_hint: str = "") -> Iterator[dict]:
        """Every item of an ARM listing, every `nextLink` followed (on ARM's origin only)."""
        next_url: str | None = url
        while next_url:
            response = self.call("GET", next_url, what)
            if response.status_code != 200:
                raise self.http_error(response, what, not_found_hint)
            try:
                page = response.json()
                values = page.get("value") or []
            except (ValueError, AttributeError) as error:
                raise ServiceError(SERVICE, f"{what}: unreadable answer from ARM") from error
            yield from (item for item in values if isinstance(item, dict))
            next_url = page.get("nextLink") or None
            if next_url and not _same_origin(next_url, self.endpoint):
                raise ServiceError(
                    SERVICE, f"{what}: ARM sent a nextLink to another host ({_host(next_url)})"
                )

    def http_error(self, response: requests.Response, what: str, not_found_hint: str = "") -> ServiceError:
        """Our error for an ARM answer that is not a success (shared.arm_errors). `what` names the
        operation and the workspace (or subscription) it was on; a 404's message ends in `not_found_hint`."""
        return http_error(response, what, self.credential_settings, not_found_hint)

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ the token
    def _bearer(self, what: str) -> str:
        with self._token_lock:  # one sign-in at a time: the first caller fetches, the others reuse it
            if self._token is None or self._token_expires - time.time() < TOKEN_MARGIN:
                try:
                    access = self._credential.get_token(ARM_SCOPE)
                except ServiceError:
                    raise  # a credential of ours has said what failed (AzureMLAuthCredential)
                except Exception as error:
                    raise sign_in_error(error, what, self.credential_settings) from error
                self._token, self._token_expires = access.token, float(access.expires_on)
            return self._token


def _same_origin(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _host(url: str) -> str:
    return urlsplit(url).netloc or "?"
