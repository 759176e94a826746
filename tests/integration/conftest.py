"""Fixtures for integration tests: loopback stand-ins + Azurite, started once per session.

* ``standins_session`` starts :class:`~loopback.StandIns` once and points the process
  environment at it (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, both cases) for the
  whole session, restoring the previous values at the end.
* ``standins`` is the same object, reset before the test (no computes, faults, log, outbox, latency).
* ``azurite_session`` / ``azurite``: the Table service; ``azurite`` makes sure it runs (a test may have
  stopped it) and deletes every table, so each test starts empty.

Everything is stopped by PID at the end, also when tests fail. Every test collected below
tests/integration gets the ``integration`` marker.
"""

import importlib
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService
from azure.functions.timer import TimerRequest

from loopback import Azurite, StandIns
from loopback.table_gate import TableGate
from shared import app
from shared.settings import Settings, prepare_sdk_environment
from shared.table_ledger import TableCancelLedger
from tests.fakes import VALID_ENVIRON

# The app's adapter switches azureml-core's retries off before its first import of azureml; the wire
# tests in test_standins.py import azureml directly, so they get the same switch, from the same place
# (conftest is imported before any test module is collected).
prepare_sdk_environment()

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


@pytest.fixture(scope="session")
def azurite_oauth():
    """A second Azurite, over HTTPS (its own test CA) with `--oauth basic`: bearer tokens for
    identity-based storage, and Shared Key."""
    az = Azurite(oauth=True)
    try:
        az.start()
        yield az
    finally:
        az.cleanup()


@pytest.fixture
def azurite(azurite_session):
    azurite_session.start()  # no-op when running
    service = TableService(connection_string=azurite_session.connection_string)
    service.retry = no_retry
    for table in service.list_tables():
        service.delete_table(table.name)
    yield azurite_session


# --------------------------------------------------------------------------- the app, wired to the wire
class Wire:
    """The three functions with their real adapters, pointed at the stand-ins and Azurite.

    Only the clock and the sleep between retries are injected (through shared.app.bootstrap): time is
    controlled by the test, and retry waits are recorded instead of slept.
    """

    MAIL_AT = datetime(2026, 11, 24, 16, tzinfo=UTC)  # 17:00 Berlin; the shutdown runs at 20:00
    SWEEP_AT = datetime(2026, 11, 24, 19, 0, 1, tzinfo=UTC)
    CANCEL_URL = "https://autoshutdown.example.net/api/CancelShutDown?code=wire-function-key"

    def __init__(self, standins, azurite, monkeypatch, compute_api: str = "azureml-core"):
        self.standins, self.azurite, self.monkeypatch = standins, azurite, monkeypatch
        self.compute_api = compute_api
        self.now = self.MAIL_AT
        self.slept: list[float] = []
        self._skipped = 0.0
        self.gates: list[TableGate] = []
        self.environ = {
            **VALID_ENVIRON,
            **standins.app_settings(),
            "AzureWebJobsStorage": azurite.connection_string,
            "func_cancel_shutdown": self.CANCEL_URL,
            "compute_api": compute_api,
        }
        monkeypatch.delenv("TZ", raising=False)
        self.configure()
        real_bootstrap = app.bootstrap

        def bootstrap(settings=None, **given):
            timing = dict(clock=lambda: self.now, sleep=self._sleep, monotonic=self._monotonic)
            return real_bootstrap(settings, **{**timing, **given})

        monkeypatch.setattr(app, "bootstrap", bootstrap)

    def _sleep(self, seconds: float) -> None:
        """Retry waits are recorded, not slept; the retry clock jumps ahead by as much."""
        self.slept.append(seconds)
        self._skipped += seconds

    def _monotonic(self) -> float:
        return time.monotonic() + self._skipped

    def through_table_gate(self) -> TableGate:
        """Route the app's Table Storage calls through a gate that answers `add_fault("table", ...)`."""
        gate = TableGate(self.azurite.port, self.standins.traffic).start()
        self.gates.append(gate)
        self.environ["AzureWebJobsStorage"] = gate.connection_string(self.azurite.connection_string)
        self.configure()
        return gate

    def configure(self, **overrides: str | None) -> None:
        """Set the App Settings (VALID_ENVIRON pointed at the stand-ins, plus overrides)."""
        for name, value in {**self.environ, **overrides}.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
            else:
                self.monkeypatch.setenv(name, value)

    # the three functions, called the way the Functions host calls them
    def mail(self, at: datetime | None = None) -> None:
        """A MailSender tick, in the warning window (three hours before the shutdown) unless told otherwise."""
        self.now = at or self.MAIL_AT
        importlib.import_module("MailSender").main(TimerRequest())

    def sweep(self, at: datetime | None = None, told: bool = True) -> None:
        """A ComputeShutdown tick, at the shutdown (a second after it) unless told otherwise. Nobody is
        stopped without notice: unless `told` is False, a tick before any mail run first runs the
        evening's MailSender an hour before it, as the timers would have."""
        at = self.now = at or self.SWEEP_AT
        if told:
            self.told(at)
        importlib.import_module("ComputeShutdown").main(TimerRequest())

    def told(self, at: datetime) -> None:
        """As if each workspace's warning mail had told about every instance it has now, an hour before
        the night's shutdown (unless a mail run did already): for tests of the sweep alone. Written
        straight to Azurite, past any gate, with no other traffic."""
        the_app = app.bootstrap(Settings.from_environ(os.environ), clock=lambda: at)
        ledger = TableCancelLedger(self.azurite.connection_string, the_app.settings.cancel_table)
        for space in self.standins.azureml.workspaces():
            where = (space.subscription_id, space.resource_group, space.name)
            scope = the_app.estate.owner(*where)
            night = scope and the_app.estate.managed(scope, *where).calendar.sweep_due(at)
            if not night or ledger.night_record(night, "mail") is not None:
                continue
            mailed_at = night.shutdown_at - timedelta(hours=1)
            record = ledger.claim(night, "mail", mailed_at, timedelta(minutes=1))
            ledger.save(record.progressed((), ()).with_noticed(tuple(space.instances()), mailed_at))

    def click(
        self, method: str, link: str, headers: dict[str, str] | None = None, delay: str | None = None
    ) -> func.HttpResponse:
        """The link opened (GET) or its page's button pressed (POST, with the button's `delay` if given)."""
        params = dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))
        headers = dict(headers or {})
        body = b""
        if delay is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = f"delay={delay}".encode()
        req = func.HttpRequest(method, link, headers=headers, params=params, body=body)
        return importlib.import_module("CancelShutDown").main(req)

    @property
    def list_service(self) -> str:
        """Where the compute list is served: azureml-core reads the regional API, the ARM client ARM."""
        return "arm" if self.compute_api == "arm" else "azureml"

    # what the world looks like
    def mails(self) -> list[dict]:
        return list(self.standins.sendgrid.outbox)

    def link(self, instance: str, to: str = "ml-team@contoso.com") -> str:
        (mail,) = self.standins.sendgrid.mails_to(to)
        text = self.standins.sendgrid.content_of(mail, "text/plain")
        return re.search(rf"\* {instance} .*\n  Keep it running tonight: (\S+)", text).group(1)

    def ledger(self) -> list[dict]:
        """The keeps in the ledger table (the nights' mail and sweep records left out)."""
        return [
            entity
            for entity in self._table()
            if not entity["RowKey"].startswith("~") and not entity["PartitionKey"].startswith("~")
        ]

    def night_records(self) -> dict[str, dict]:
        """The nights' records by kind ("mail", "sweep"), as stored."""
        return {e["RowKey"][1:]: e for e in self._table() if e["RowKey"].startswith("~")}

    def _table(self) -> list[dict]:
        service = TableService(connection_string=self.azurite.connection_string)
        service.retry = no_retry
        if not service.exists("cishutdown"):
            return []
        return list(service.query_entities("cishutdown"))


@pytest.fixture(params=["azureml-core", "arm"])
def wire(standins, azurite, monkeypatch, request):
    """Every test of the compute path runs with both compute clients: azureml-core and ARM REST."""
    wired = Wire(standins, azurite, monkeypatch, compute_api=request.param)
    yield wired
    for gate in wired.gates:
        gate.stop()
