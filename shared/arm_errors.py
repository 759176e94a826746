"""ARM's answers and azure-identity's sign-in failures, turned into our errors (shared.errors).

- an ARM answer that is not a success: 401/403 CredentialsError naming the settings to check, 404
  NotFoundError, 408, 429 and 5xx TransientServiceError with the server's Retry-After (seconds or
  HTTP date), anything else ServiceError; each quotes ARM's error code and the first line of its message;
- a failed sign-in: Azure AD's AADSTS codes name the setting that most likely holds the mistake, an
  unknown tenant names tenant_id, a token service that did not answer (or answered 408, 429, 5xx) is
  transient, any other refusal names the credential's settings.

`what` says what was being done and on which workspace or subscription. No token or secret is ever
part of a message: only status codes, ARM's error code and message, and Azure AD's error code.
"""

from __future__ import annotations

import re

import requests
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError

from .errors import CredentialsError, NotFoundError, ServiceError, TransientServiceError
from .retry import retry_after_seconds

SERVICE = "AzureML"
# Azure AD error codes -> the App Settings that most likely hold the mistake. A copy of the table in
# azureml_workspace.py, which cannot be imported here: it imports azureml-core.
AAD_CODES = {
    "AADSTS7000215": ("service_principal_password",),  # invalid client secret
    "AADSTS7000222": ("service_principal_password",),  # client secret expired
    "AADSTS700016": ("service_principal_id", "tenant_id"),  # application not found in tenant
    "AADSTS90002": ("tenant_id",),  # tenant not found
}


def http_error(
    response: requests.Response, what: str, credential_settings: tuple[str, ...], not_found_hint: str = ""
) -> ServiceError:
    status = response.status_code
    detail = f"HTTP {status}{_arm_error(response)}"
    if status in (401, 403):
        return CredentialsError(SERVICE, f"{what}: access denied ({detail})", credential_settings)
    if status == 404:
        return NotFoundError(SERVICE, f"{what}: not found ({detail}){not_found_hint}")
    if status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return TransientServiceError(SERVICE, f"{what}: {detail}", retry_after)
    return ServiceError(SERVICE, f"{what}: {detail}")


def sign_in_error(error: Exception, what: str, credential_settings: tuple[str, ...]) -> ServiceError:
    what = f"{what}: signing in to Azure AD"
    text = str(error)
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientServiceError(SERVICE, f"{what}: no answer ({type(error).__name__})")
    if not isinstance(error, ClientAuthenticationError):
        return ServiceError(SERVICE, f"{what}: {type(error).__name__}: {_first_line(text)}")
    aad = re.search(r"AADSTS\d+", text)
    if aad:
        settings = AAD_CODES.get(aad.group(0), credential_settings)
        return CredentialsError(SERVICE, f"{what}: Azure AD refused to sign in ({aad.group(0)})", settings)
    if "Unable to get authority configuration" in text:
        return CredentialsError(SERVICE, f"{what}: Azure AD does not know the tenant", ("tenant_id",))
    status = _sign_in_status(error)
    if status is not None and (status in (408, 429) or status >= 500):
        retry_after = None
        response = getattr(error, "response", None)
        if response is not None:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return TransientServiceError(SERVICE, f"{what}: HTTP {status}", retry_after)
    return CredentialsError(SERVICE, f"{what}: refused ({_first_line(text)})", credential_settings)


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


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
