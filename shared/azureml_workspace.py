"""An Azure ML workspace through azureml-core (SDK v1): list compute instances, stop one.

The workspace is opened once per run and shared by the parallel stops. The authentication object is
shared further, by every workspace of the run (`auth=`, see `authentication`): azureml-core's
ServicePrincipalAuthentication keeps its ARM token on the object until five minutes before it expires,
so a run signs in once however many workspaces it opens. `AzureMLAuthCredential` lends that same token
to the ARM listing of workspaces (shared.arm_directory). The instance objects from the single listing
are reused for the stops, so no instance is fetched by name. azureml-core's own retries are switched
off before its first import (see settings.prepare_sdk_environment); shared.retry.RetryPolicy decides
about retrying, and this module only says which failures are worth it.

Opening a workspace refuses an Azure AI Foundry project (ProjectWorkspaceError, see
shared.workspace_kinds): azureml-core's own read of the workspace carries its `kind` (msrest keeps the
fields its model lacks in `additional_properties`), so a workspace or hub costs no call; a project, or
an answer without a kind, is read once more through ARM at the current api-version, for its hub.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import requests
from azure.core.credentials import AccessToken

from .arm_client import TOKEN_MARGIN, ArmClient
from .arm_directory import describe
from .arm_pacing import WriteBucket
from .credentials import ServicePrincipal
from .domain import JOB_RUNNING, RUNNING, Instance, StopOutcome
from .errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from .retry import retry_after_seconds
from .settings import prepare_sdk_environment
from .workspace_kinds import PROJECT, refuse_project

prepare_sdk_environment()  # before azureml is imported: it reads its retry count once, at import
from azureml.core import ComputeTarget, Workspace  # noqa: E402
from azureml.core.authentication import MsiAuthentication, ServicePrincipalAuthentication  # noqa: E402
from azureml.core.compute import ComputeInstance  # noqa: E402

SERVICE = "AzureML"
STOPPED_OR_STOPPING = {"stopped", "stopping"}
SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
MI_SETTINGS = ("the Function App's managed identity and its role on the workspace",)
WORKSPACE_HINT = "check aml_workspaces, or subscription_id, resource_group and aml_workspace"
# The token audiences ARM accepts; azureml-core's ARM token is for the first.
ARM_SCOPES = frozenset(
    {"https://management.core.windows.net//.default", "https://management.azure.com/.default"}
)


def authentication(principal: ServicePrincipal | None, managed_identity_client_id: str | None = None):
    """The azureml-core auth object for a run: the service principal, else the managed identity
    (user-assigned with `managed_identity_client_id`)."""
    if principal is None:
        config = {"client_id": managed_identity_client_id} if managed_identity_client_id else {}
        return RunMsiAuthentication(identity_config=config)
    return ServicePrincipalAuthentication(principal.tenant_id, principal.client_id, principal.secret)


class RunMsiAuthentication(MsiAuthentication):
    """azureml-core's managed identity, signing in once per run: MsiAuthentication asks the identity
    endpoint for a new ARM token on every call (every workspace, listing and stop), unlike the service
    principal's auth object, which keeps its token."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._token_lock = threading.Lock()
        self._arm_token: str | None = None

    def _get_arm_token(self):
        with self._token_lock:
            if self._arm_token is None or _expires_on(self._arm_token) - time.time() < TOKEN_MARGIN:
                self._arm_token = super()._get_arm_token()
            return self._arm_token


class AzureMLWorkspace:
    """`principal` None means the Function App's managed identity. `auth`: the run's azureml-core auth
    object, shared by its workspaces (built from `principal` when not given). `write_bucket`: ARM's
    write bucket of the subscription, shared by its workspaces (`ArmClient.bucket`), so that stops are
    paced as ARM throttles them; None: unpaced."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        principal: ServicePrincipal | None = None,
        *,
        auth=None,
        write_bucket: WriteBucket | None = None,
    ):
        self._bucket = write_bucket
        self._where = (subscription_id, resource_group, name)
        self._principal = principal
        self._shared_auth = auth
        self.label = f"workspace {resource_group}/{name}"
        self._lock = threading.Lock()
        self._workspace = None
        self._computes: dict[str, object] = {}

    def list_instances(self) -> list[Instance]:
        workspace = self._connect()
        try:
            computes = ComputeTarget.list(workspace)
        except Exception as error:
            raise self._translate(error, f"listing compute instances in {self.label}") from error
        instances = [c for c in computes if isinstance(c, ComputeInstance)]
        self._computes = {c.name: c for c in instances}
        return [
            Instance(c.name, _state(c), _owner(c), _tags(c), getattr(c, "vm_size", None) or None,
                     getattr(c, "location", None) or None)
            for c in instances
        ]  # fmt: skip

    def stop(self, name: str) -> StopOutcome:
        compute = self._computes.get(name)
        if self._bucket is not None:
            # The token first, then the read: after a wait for ARM's bucket the read is still fresh.
            self._bucket.take()
        try:
            if compute is None:
                compute = ComputeInstance(self._connect(), name)
            else:
                compute.refresh_state()  # a fresh read: a job may have started since the listing
            state = _state(compute)
            if state != RUNNING:
                return StopOutcome.BUSY if state == JOB_RUNNING else StopOutcome.NOT_RUNNING
            # stop() would read the state again (and stop a JobRunning instance all the same): we
            # have just read it, so skip its read and send the stop alone.
            compute.refresh_state = _already_read
            compute.stop(wait_for_completion=False, show_output=False)
        except Exception as error:
            if compute is not None and _state(compute).lower() in STOPPED_OR_STOPPING:
                return StopOutcome.NOT_RUNNING
            raise self._translate(error, f"stopping {name} in {self.label}") from error
        return StopOutcome.STOPPED

    def _connect(self):
        with self._lock:
            if self._workspace is None:
                subscription_id, resource_group, name = self._where
                auth = self._auth()
                try:
                    workspace = Workspace(subscription_id, resource_group, name, auth=auth)
                except Exception as error:
                    raise self._translate(error, f"opening {self.label}") from error
                kind = _kind(workspace)
                if kind is None or kind.lower() == PROJECT:
                    self._refuse_project(auth)
                self._workspace = workspace
            return self._workspace

    def _refuse_project(self, auth) -> None:
        """Read the workspace through ARM (on the run's sign-in): ProjectWorkspaceError if a project."""
        settings = SP_SETTINGS if self._principal else MI_SETTINGS
        client = ArmClient(AzureMLAuthCredential(auth, settings), credential_settings=settings)
        try:
            refuse_project(describe(client, *self._where, f"opening {self.label}", f" ({WORKSPACE_HINT})"))
        finally:
            client.close()

    def _auth(self):
        return self._shared_auth if self._shared_auth is not None else authentication(self._principal)

    def _translate(self, error: Exception, what: str) -> ServiceError:
        return translate(error, what, SP_SETTINGS if self._principal else MI_SETTINGS)


def _kind(workspace) -> str | None:
    """The `kind` in azureml-core's answer for the workspace, if it had one."""
    read = getattr(workspace, "_workspace_autorest_object", None)
    kind = (getattr(read, "additional_properties", None) or {}).get("kind")
    return kind if isinstance(kind, str) else None


def _already_read() -> None:
    """Stands in for ComputeInstance.refresh_state right after the adapter's own read."""


class AzureMLAuthCredential:
    """An azureml-core auth object as an azure-core `TokenCredential` for ARM, so that the ARM listing of
    workspaces (shared.arm_directory) uses the run's one sign-in. Only ARM tokens: azureml-core's auth
    has one token for ARM, whatever scope is asked. `credential_settings` name what to fix if it fails."""

    def __init__(self, auth, credential_settings: tuple[str, ...]):
        self._auth = auth
        self._credential_settings = credential_settings

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        if not scopes or not set(scopes) <= ARM_SCOPES:
            raise ValueError(f"azureml-core's authentication gives ARM tokens only, not {scopes}")
        try:
            header = self._auth.get_authentication_header()  # its cached token, or a new sign-in
        except Exception as error:
            raise translate(error, "signing in", self._credential_settings) from error
        token = header["Authorization"].partition(" ")[2]
        return AccessToken(token, _expires_on(token))


def _expires_on(token: str) -> int:
    """The JWT's `exp` (read, not verified: the token is only passed on to ARM). Unreadable: now, so
    the caller asks again next time (azureml-core answers from its own cache)."""
    try:
        payload = token.split(".")[1]
        return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return int(time.time())


# Azure AD error codes -> the App Settings that most likely hold the mistake.
AAD_CODES = {
    "AADSTS7000215": ("service_principal_password",),  # invalid client secret
    "AADSTS7000222": ("service_principal_password",),  # client secret expired
    "AADSTS700016": ("service_principal_id", "tenant_id"),  # application not found in tenant
    "AADSTS90002": ("tenant_id",),  # tenant not found
}


def translate(error: Exception, what: str, credentials: tuple[str, ...]) -> ServiceError:
    """Turn an azureml-core, MSAL or requests exception into our error tree.

    azureml-core reports HTTP failures as text ("Response Code: 429 ... 'Retry-After': '17'"), so the
    status and Retry-After are read from the message.
    """
    text = str(error)
    status = _status(text)
    aad = re.search(r"AADSTS\d+", text)
    if type(error).__module__.startswith("msal"):
        what = f"{what}: signing in to Azure AD"
    if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})")
    if aad:
        settings = AAD_CODES.get(aad.group(0), credentials)
        return CredentialsError(SERVICE, f"{what}: Azure AD refused to sign in ({aad.group(0)})", settings)
    if "Unable to get authority configuration" in text:
        return CredentialsError(SERVICE, f"{what}: Azure AD does not know the tenant", ("tenant_id",))
    if status in (401, 403) or "AuthenticationError" in type(error).__name__:
        return CredentialsError(SERVICE, f"{what}: access denied (HTTP {status})", credentials)
    if "AuthorizationFailed" in text:  # the workspace GET refused: azureml-core quotes ARM's error code only
        return CredentialsError(
            SERVICE, f"{what}: access denied (HTTP 403, AuthorizationFailed)", credentials
        )
    if "don't have access to" in text and "subscription" in text:
        return NotFoundError(
            SERVICE, f"{what}: its subscription is not found or not accessible ({WORKSPACE_HINT})"
        )
    if status == 404 or "not found" in text.lower():
        return NotFoundError(SERVICE, f"{what}: not found ({WORKSPACE_HINT})")
    if status in (408, 429) or (status is not None and status >= 500):
        return TransientServiceError(SERVICE, f"{what}: HTTP {status}", _retry_after(text))
    return ServiceError(SERVICE, f"{what}: {_first_line(text)}")


def _state(compute) -> str:
    status = getattr(compute, "status", None)
    return getattr(status, "state", None) or getattr(compute, "provisioning_state", None) or "Unknown"


def _tags(compute) -> tuple[tuple[str, str], ...]:
    tags = getattr(compute, "tags", None) or {}
    return tuple((str(key), str(value)) for key, value in tags.items()) if isinstance(tags, dict) else ()


def _owner(compute) -> str | None:
    status = getattr(compute, "status", None)
    return getattr(status, "created_by_user_name", None)


def _status(text: str) -> int | None:
    match = re.search(r"Response Code: (\d{3})", text) or re.search(r"HTTP Error:? (\d{3})", text)
    return int(match.group(1)) if match else None


def _retry_after(text: str) -> float | None:
    # azureml-core prints the response headers as a dict: seconds or an HTTP date, both in quotes.
    match = re.search(r"'Retry-After': '([^']+)'", text, re.I)
    return retry_after_seconds(match.group(1)) if match else None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
