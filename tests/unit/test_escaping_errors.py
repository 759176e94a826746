"""What leaves an entry point is reported by the Functions worker itself (text, traceback, cause chain),
past the log-record factory: it must already be masked. Issue: a SAS signature escaped this way."""

import importlib
import socket
import traceback

import pytest
from azure.functions.timer import TimerRequest

from shared import redaction
from shared.errors import RunFailedError, TransientServiceError
from tests.unit.test_functions import SWEEP_AT, World

ComputeShutdown = importlib.import_module("ComputeShutdown")
SIG = "Xq7Rt2LmN9pKsW4vB8cD1eF5gH3jZ6yA0uI2oP4tR8w%3D"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sas_connection_string(port: int) -> str:
    sas = f"sv=2019-02-02&ss=t&srt=sco&sp=rwdlacu&se=2030-01-01T00:00:00Z&spr=https,http&sig={SIG}"
    return f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;SharedAccessSignature={sas}"


def chain(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def test_a_sas_signature_never_leaves_compute_shutdown(monkeypatch):
    world = World(monkeypatch, real_ledger=True)
    world.now = SWEEP_AT
    monkeypatch.setenv("AzureWebJobsStorage", sas_connection_string(closed_port()))
    with pytest.raises(TransientServiceError) as caught:  # the type survives: monitoring can tell
        ComputeShutdown.main(TimerRequest())
    reported = "".join(traceback.format_exception(caught.value))
    assert "Table Storage" in reported and "sig=***" in reported
    for error in chain(caught.value):
        assert SIG not in str(error) and SIG not in repr(error.args)
    assert SIG not in reported


class Mysterious(Exception):
    """A type whose text comes from somewhere a copy cannot reach."""

    def __str__(self):
        return f"failed at https://h/x?sig={SIG}"


def test_a_type_that_builds_its_own_text_is_replaced_by_its_masked_text():
    masked = redaction.scrub(Mysterious())
    assert SIG not in "".join(traceback.format_exception(masked))
    assert "Mysterious: failed at https://h/x?sig=***" in str(masked)


def test_a_clean_error_is_left_exactly_as_it_was():
    error = RunFailedError("ComputeShutdown", {"ci-a": "HTTP 500"})
    assert redaction.scrub(error) is error


def test_attributes_and_the_cause_are_masked_and_the_type_kept():
    try:
        try:
            raise ConnectionError(f"GET https://a.table.core.windows.net/t?sig={SIG}")
        except ConnectionError as cause:
            raise RunFailedError("ComputeShutdown", {"ci-a": f"sig={SIG}"}) from cause
    except RunFailedError as error:
        masked = redaction.scrub(error)
    assert type(masked) is RunFailedError and masked.failures == {"ci-a": "sig=***"}
    assert masked.__cause__ is None and masked.__suppress_context__
    reported = "".join(traceback.format_exception(masked))
    assert SIG not in reported and "Caused by (secrets masked)" in reported and "ConnectionError" in reported
