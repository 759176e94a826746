import logging

import pytest

from shared import redaction


def test_known_secrets_and_credential_shapes_are_masked_in_every_logger(caplog):
    redaction.protect(["s3cr3t-value-123"])
    caplog.set_level(logging.DEBUG)
    sdk_logger = logging.getLogger("python_http_client.client")
    sdk_logger.setLevel(logging.DEBUG)
    sdk_logger.debug("HEADERS: %s", {"Authorization": "Bearer SG.abc.def"})
    logging.getLogger("any").info(
        "opening https://h/api/C?code=fkey&token=abc.def-ghi for %s", "s3cr3t-value-123"
    )
    logging.getLogger("any").warning("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy==;")
    text = caplog.text
    for leaked in ("SG.abc.def", "fkey", "abc.def-ghi", "s3cr3t-value-123", "Zm9vYmFy"):
        assert leaked not in text
    assert "Bearer ***" in text and "token=***" in text and "AccountKey=***" in text


def test_tracebacks_are_masked_too(caplog):
    redaction.protect(["another-secret-xyz"])
    try:
        raise RuntimeError("failed with another-secret-xyz")
    except RuntimeError:
        logging.getLogger("any").exception("boom")
    assert "another-secret-xyz" not in caplog.text
    assert "RuntimeError: failed with ***" in caplog.text


def test_short_values_are_not_treated_as_secrets():
    redaction.protect(["abc"])
    assert redaction.redact("abc is fine") == "abc is fine"


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("POST /token grant_type=refresh_token&refresh_token=0.AXkA-rt-value", "0.AXkA-rt-value"),
        ("#access_token=eyJ0eXAi.payload.sig&token_type=Bearer", "eyJ0eXAi.payload.sig"),
        ("callback?id_token=eyJhbGci.id.tok&state=1", "eyJhbGci.id.tok"),
        ('{"client_id": "abc", "client_secret": "cs~value.123"}', "cs~value.123"),
        ('{"access_token":"at-json-value","expires_in":3599}', "at-json-value"),
        ("https://a.table.core.windows.net/t?sv=2019-02-02&sig=AbC%2Bd%3D", "AbC%2Bd%3D"),
    ],
)
def test_credential_shapes_after_an_underscore_and_in_json_are_masked(text, leaked):
    masked = redaction.redact(text)
    assert leaked not in masked and "***" in masked


def test_harmless_words_next_to_credentials_stay_readable():
    assert redaction.redact('{"expires_in": 3599, "token_type": "Bearer"}') == (
        '{"expires_in": 3599, "token_type": "Bearer"}'
    )
    assert redaction.redact("?code=k&clientId=default") == "?code=***&clientId=default"


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("code", "Zm9vYmFyYmF6cXV4", True),
        ("clientId", "default", False),
        ("region", "westeurope", False),
        ("subscription", "00000000-1111-2222-3333-444444444444", False),  # a GUID is an id, not a key
        ("x", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ", True),  # unnamed, but shaped like a key
        ("sig", "abc", False),  # too short to mask without masking ordinary words
    ],
)
def test_which_query_values_count_as_credentials(name, value, secret):
    assert redaction.is_credential(name, value) is secret
