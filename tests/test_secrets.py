"""The last test of the run: nothing any test captured contains a secret or a cancel-link token."""

import pytest

from loopback.acs import AcsStandIn
from loopback.azureml import AzureMLStandIn
from loopback.sendgrid import SendGridStandIn
from tests import conftest
from tests.fakes import VALID_ENVIRON

KNOWN_SECRETS = {
    VALID_ENVIRON["service_principal_password"],
    VALID_ENVIRON["SENDGRID_API_KEY"],
    VALID_ENVIRON["cancel_link_secret"],
    "function-key-not-for-logs",
    "wire-function-key",
    AzureMLStandIn().client_secret,
    SendGridStandIn().api_key,
    AcsStandIn().access_key,
}


@pytest.mark.last
def test_no_test_logged_a_secret_or_a_token():
    captured = "\n".join(conftest.CAPTURED)
    assert conftest.CAPTURED  # the scan has something to scan
    leaked_secrets = sorted(s for s in KNOWN_SECRETS if s in captured)
    leaked_tokens = [t[:12] + "..." for t in conftest.TOKENS if t in captured]
    assert leaked_secrets == [] and leaked_tokens == []
