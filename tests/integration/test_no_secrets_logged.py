"""At DEBUG level, through the real SDKs, no secret and no link token reaches a log line or the console."""

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from azureml.core.authentication import MsiAuthentication, ServicePrincipalAuthentication

from shared import app
from shared.settings import load_settings


def test_a_whole_evening_at_debug_level_logs_no_secret_and_no_token(wire, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    wire.standins.azureml.seed("ci-a", "Running", created_by="a@contoso.com")
    wire.standins.azureml.seed("ci-b", "Running", created_by="b@contoso.com")
    wire.configure(notify_instance_owner="true")
    wire.mail()
    link = wire.link("ci-a")
    wire.click("GET", link)
    wire.click("POST", link)
    wire.click("POST", link[:-4] + "AAAA")
    wire.sweep()

    tokens = {parse_qs(urlsplit(url).query)["token"][0] for m in wire.mails()
              for url in re.findall(r"https://\S+", wire.standins.sendgrid.content_of(m, "text/plain"))}  # fmt: skip
    secrets = {
        wire.environ["SENDGRID_API_KEY"],
        wire.environ["service_principal_password"],
        wire.environ["cancel_link_secret"],
        "wire-function-key",
        *tokens,
    }
    console = capfd.readouterr()
    logged = caplog.text + console.out + console.err
    assert len(tokens) == 4 and len(caplog.records) > 20  # a link per recipient and instance; logged at DEBUG
    assert [s for s in secrets if s in logged] == []


@pytest.mark.parametrize("wire", ["azureml-core"], indirect=True)  # arm: test_managed_identity_evening.py
def test_managed_identity_is_used_without_service_principal_settings(wire):
    wire.configure(service_principal_id=None, service_principal_password=None)
    auth = app.bootstrap(load_settings()).workspace._auth()
    assert isinstance(auth, MsiAuthentication) and not isinstance(auth, ServicePrincipalAuthentication)
