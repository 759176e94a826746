import logging

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
