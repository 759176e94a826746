"""azureml-core's managed identity, made to sign in once per run like its service principal does."""

import base64
import json
import time

from shared import azureml_workspace


def jwt(expires_in: float) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': int(time.time() + expires_in)})}.sig"


def test_the_managed_identity_asks_its_endpoint_once_per_run(monkeypatch):
    asked: list[dict] = []

    def from_the_endpoint(self):  # MsiAuthentication's own: a request to the identity endpoint each time
        asked.append(self._identity_config)
        return jwt(3600)

    monkeypatch.setattr(azureml_workspace.MsiAuthentication, "_get_arm_token", from_the_endpoint)
    auth = azureml_workspace.authentication(None, "0c5b7a4e-0000-4000-8000-0000000c11e7")
    headers = {auth.get_authentication_header()["Authorization"] for _ in range(5)}
    assert len(headers) == 1 and asked == [{"client_id": "0c5b7a4e-0000-4000-8000-0000000c11e7"}]


def test_a_token_about_to_expire_is_fetched_again(monkeypatch):
    asked = []
    monkeypatch.setattr(
        azureml_workspace.MsiAuthentication, "_get_arm_token", lambda self: asked.append(1) or jwt(60)
    )
    auth = azureml_workspace.authentication(None)
    auth.get_authentication_header()
    auth.get_authentication_header()
    assert len(asked) == 2 and auth._identity_config == {}
