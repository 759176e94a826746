"""A whole evening on the managed identity, through the identity-endpoint stand-in, with no credential in
the settings: ARM for the compute instances, identity-based Table Storage (Azurite over HTTPS with
OAuth) for the ledger, ACS Email for the mail. Only the link-signing key is still a setting."""

from datetime import timedelta
from pathlib import Path

import pytest

NO_CREDENTIALS = {
    "service_principal_id": None,
    "service_principal_password": None,
    "tenant_id": None,
    "SENDGRID_API_KEY": None,
    "AzureWebJobsStorage": None,
    "compute_api": "arm",
}


@pytest.mark.parametrize("wire", ["arm"], indirect=True)
def test_the_evening_signs_in_only_as_the_managed_identity(wire, azurite_oauth, monkeypatch, tmp_path):
    standins = wire.standins
    bundle = tmp_path / "cas.pem"  # trust the stand-ins' CA and Azurite's
    bundle.write_text(Path(standins.ca_file).read_text() + Path(azurite_oauth.ca_file).read_text())
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "requests_ca_bundle", "ssl_cert_file"):
        monkeypatch.setenv(name, str(bundle))
    for name, value in standins.identity_env.items():  # as App Service and Functions provide them
        monkeypatch.setenv(name, value)
    for name, value in NO_CREDENTIALS.items():
        wire.environ.pop(name, None) if value is None else wire.environ.update({name: value})
    wire.environ.update(
        AzureWebJobsStorage__tableServiceUri=azurite_oauth.table_endpoint,
        acs_endpoint=standins.acs.endpoint.rstrip("/"),
        from_email="DoNotReply@contoso.com",
        cancel_table="mievening",
    )
    wire.configure(**NO_CREDENTIALS)
    for name in ("ci-a", "ci-b"):
        standins.azureml.seed(name, "Running", created_by=f"{name}@contoso.com")

    wire.mail()
    (mail,) = standins.acs.outbox
    link = next(url for url in mail["content"]["plainText"].split() if "token=" in url)
    assert wire.click("POST", link, delay="60").status_code == 200
    wire.sweep()
    assert standins.stopped_names() == ["ci-b"]
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=60))
    assert sorted(standins.stopped_names()) == ["ci-a", "ci-b"]

    assert standins.count(service="identity") >= 1 and standins.count(service="aad") == 0
    assert standins.count(service="sendgrid") == 0 and standins.count(service="azureml") == 0  # ARM only
