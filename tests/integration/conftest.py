"""Fixtures for integration tests: loopback stand-ins + Azurite, started once per session.

* ``standins_session`` starts :class:`~tests.standins.StandIns` once and points the process
  environment at it (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, both cases) for the
  whole session, restoring the previous values at the end.
* ``standins`` is the same object, reset before the test (no computes, faults, log, outbox, latency).
* ``azurite_session`` / ``azurite``: the Table service; ``azurite`` makes sure it runs (a test may have
  stopped it) and deletes every table, so each test starts empty.

Everything is stopped by PID at the end, also when tests fail. Every test collected below
tests/integration gets the ``integration`` marker.
"""

import os

# azureml-core reads this once, at import time: without it a 429/5xx costs minutes of retries.
os.environ.setdefault("AZUREML_DEFAULT_RETRIES", "0")

from pathlib import Path

import pytest

from tests.standins import Azurite, StandIns

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def standins_session():
    with StandIns() as stack, pytest.MonkeyPatch.context() as mp:
        for name, value in stack.env.items():
            mp.setenv(name, value)
        yield stack


@pytest.fixture
def standins(standins_session):
    standins_session.reset()
    yield standins_session


@pytest.fixture(scope="session")
def azurite_session():
    az = Azurite()
    try:
        az.start()
        yield az
    finally:
        az.cleanup()


@pytest.fixture
def azurite(azurite_session):
    from azure.cosmosdb.table.common.retry import no_retry
    from azure.cosmosdb.table.tableservice import TableService

    azurite_session.start()  # no-op when running
    service = TableService(connection_string=azurite_session.connection_string)
    service.retry = no_retry
    for table in service.list_tables():
        service.delete_table(table.name)
    yield azurite_session
