"""The Azure ML workspace through azureml-core (SDK v1): list compute instances, stop one.

The workspace (and its authentication) is built once per run and shared by the parallel stops.
The instance objects from the single listing are reused for the stops, so no instance is fetched by
name. azureml-core's own retries are switched off before its first import (see
settings.prepare_sdk_environment); shared.retry.RetryPolicy decides about retrying, and this module
only says which failures are worth it.
"""

from __future__ import annotations

import re
import threading

import requests

from .domain import Instance
from .errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from .settings import Settings, prepare_sdk_environment

prepare_sdk_environment()  # before azureml is imported: it reads its retry count once, at import
from azureml.core import ComputeTarget, Workspace  # noqa: E402
from azureml.core.authentication import MsiAuthentication, ServicePrincipalAuthentication  # noqa: E402
from azureml.core.compute import ComputeInstance  # noqa: E402

SERVICE = "AzureML"
STOPPED_OR_STOPPING = {"stopped", "stopping"}
SP_SETTINGS = ("tenant_id", "service_principal_id", "service_principal_password")
MI_SETTINGS = ("the Function App's managed identity and its role on the workspace",)
WORKSPACE_SETTINGS = ("subscription_id", "resource_group", "aml_workspace")


class AzureMLWorkspace:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._lock = threading.Lock()
        self._workspace = None
        self._computes: dict[str, object] = {}

    from_settings = classmethod(lambda cls, settings: cls(settings))

    def list_instances(self) -> list[Instance]:
        workspace = self._connect()
        try:
            computes = ComputeTarget.list(workspace)
        except Exception as error:
            raise self._translate(error, "listing compute instances") from error
        instances = [c for c in computes if isinstance(c, ComputeInstance)]
        self._computes = {c.name: c for c in instances}
        return [Instance(c.name, _state(c), _owner(c)) for c in instances]

    def stop(self, name: str) -> bool:
        compute = self._computes.get(name)
        try:
            if compute is None:
                compute = ComputeInstance(self._connect(), name)
            # stop() re-reads the state first and refuses (no POST) if the instance is already stopped.
            compute.stop(wait_for_completion=False, show_output=False)
        except Exception as error:
            if compute is not None and _state(compute).lower() in STOPPED_OR_STOPPING:
                return False
            raise self._translate(error, f"stopping {name}") from error
        return True

    def _connect(self):
        with self._lock:
            if self._workspace is None:
                s = self._settings
                try:
                    self._workspace = Workspace(
                        s.subscription_id, s.resource_group, s.workspace, auth=self._auth()
                    )
                except Exception as error:
                    raise self._translate(error, f"opening workspace {s.workspace}") from error
            return self._workspace

    def _auth(self):
        s = self._settings
        if s.uses_service_principal:
            return ServicePrincipalAuthentication(
                s.tenant_id, s.service_principal_id, s.service_principal_password
            )
        return MsiAuthentication()

    def _translate(self, error: Exception, what: str) -> ServiceError:
        credentials = SP_SETTINGS if self._settings.uses_service_principal else MI_SETTINGS
        return translate(error, what, credentials)


def translate(error: Exception, what: str, credentials: tuple[str, ...]) -> ServiceError:
    """Turn an azureml-core, MSAL or requests exception into our error tree."""
    text = str(error)
    status = _status(text)
    if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})")
    if "AADSTS" in text or type(error).__name__ == "AuthenticationException" or status == 401:
        return CredentialsError(SERVICE, f"{what}: authentication failed ({_aad_code(text)})", credentials)
    if status == 403:
        return CredentialsError(SERVICE, f"{what}: access denied (HTTP 403)", credentials)
    if status == 404 or "not found" in text.lower():
        return NotFoundError(
            SERVICE, f"{what}: not found (check App Settings {', '.join(WORKSPACE_SETTINGS)})"
        )
    if status in (408, 429) or (status is not None and status >= 500):
        return TransientServiceError(SERVICE, f"{what}: HTTP {status}", _retry_after(text))
    return ServiceError(SERVICE, f"{what}: {_first_line(text)}")


def _state(compute) -> str:
    status = getattr(compute, "status", None)
    return getattr(status, "state", None) or getattr(compute, "provisioning_state", None) or "Unknown"


def _owner(compute) -> str | None:
    status = getattr(compute, "status", None)
    return getattr(status, "created_by_user_name", None)


def _status(text: str) -> int | None:
    match = re.search(r"Response Code: (\d{3})", text) or re.search(r"\bstatus code:? (\d{3})", text, re.I)
    return int(match.group(1)) if match else None


def _retry_after(text: str) -> float | None:
    match = re.search(r"'Retry-After': '(\d+(?:\.\d+)?)'", text, re.I)
    return float(match.group(1)) if match else None


def _aad_code(text: str) -> str:
    match = re.search(r"AADSTS\d+", text)
    return match.group(0) if match else _first_line(text)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
