"""How DataTablesLedger turns azure-core's exceptions into shared.errors (no Azurite needed)."""

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.data_tables_ledger import DataTablesLedger, _precondition_failed
from shared.errors import CredentialsError, ServiceError, TransientServiceError


class Response:
    """Just enough of an azure-core HTTP response for an HttpResponseError."""

    def __init__(self, status: int, headers: dict[str, str] | None = None):
        self.status_code, self.reason, self.headers = status, "Reason", headers or {}
        self.request = None

    def text(self) -> str:
        return ""


def error(kind=HttpResponseError, status=500, message="Injected.", **headers):
    failure = kind(message=message, response=Response(status, headers))
    failure.error_code = None
    return failure


class NeverAsked:
    def get_token(self, *scopes, **kwargs):
        raise AssertionError("no request is sent here")


@pytest.fixture
def identity():
    return DataTablesLedger("https://account.table.core.windows.net/", "cishutdown", NeverAsked())


@pytest.fixture
def by_key():
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    return DataTablesLedger.from_connection_string(
        f"DefaultEndpointsProtocol=https;AccountName=account;AccountKey={key};EndpointSuffix=core.windows.net",
        "cishutdown",
    )


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_throttling_and_server_errors_are_transient_with_their_retry_after(identity, status):
    translated = identity._translate(error(status=status, **{"Retry-After": "12"}), "reading")
    assert isinstance(translated, TransientServiceError) and translated.retry_after == 12
    assert str(translated) == f"Table Storage: reading: HTTP {status} (Injected.)"


@pytest.mark.parametrize("failure", [ServiceRequestError("refused"), ServiceResponseError("read timed out")])
def test_no_answer_is_transient(identity, failure):
    assert isinstance(identity._translate(failure, "reading"), TransientServiceError)


@pytest.mark.parametrize("status", [401, 403])
def test_access_denied_names_the_identity_settings_and_the_role(identity, status):
    translated = identity._translate(error(ClientAuthenticationError, status), "claiming the sweep run")
    assert isinstance(translated, CredentialsError)
    assert translated.settings == ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__tableServiceUri")
    assert "the Function App's identity and its Storage Table Data Contributor role" in str(translated)


def test_access_denied_with_a_key_names_the_connection_string(by_key):
    translated = by_key._translate(error(status=403), "reading")
    assert isinstance(translated, CredentialsError) and translated.settings == ("AzureWebJobsStorage",)
    assert "Storage Table Data Contributor" not in str(translated)


def test_a_credential_that_gets_no_token_is_a_credentials_error(identity):
    translated = identity._translate(ClientAuthenticationError("no managed identity endpoint"), "reading")
    assert isinstance(translated, CredentialsError) and "could not get a token" in str(translated)


@pytest.mark.parametrize("status", [400, 404, 409, 413])
def test_other_answers_are_not_retried(identity, status):
    translated = identity._translate(
        error(ResourceNotFoundError if status == 404 else HttpResponseError, status), "x"
    )
    assert type(translated) is ServiceError and f"HTTP {status}" in str(translated)


def test_a_412_is_a_precondition_whatever_its_type():
    assert _precondition_failed(error(ResourceModifiedError, 412))
    assert _precondition_failed(error(HttpResponseError, 412))
    assert not _precondition_failed(error(HttpResponseError, 409))
