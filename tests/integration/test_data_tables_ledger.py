"""DataTablesLedger (azure-data-tables) against Azurite.

- The Table adapter's behaviours (test_nights_on_the_wire.py, test_delays_on_the_wire.py), run over
  both adapters and over identity-based storage: a bearer token over HTTPS to an Azurite started with
  `--oauth basic` (`ledger_adapter`: "cosmosdb", "data-tables", "data-tables-identity").
- Switching loses no record: whatever one adapter wrote, the other reads as the same values, takes
  over and saves over its version (claims, merges, marks, a keep stored before delays existed).
- Errors: the SDK's retries are off (one request per call) and its exceptions come out as shared.errors.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.cosmosdb.table.common.retry import no_retry
from azure.cosmosdb.table.tableservice import TableService

from loopback.table_gate import TableGate
from shared import data_tables_ledger
from shared.data_tables_ledger import DataTablesLedger
from shared.domain import Cancellation, Keep, Night, NightRecord, WorkspaceTarget
from shared.errors import CredentialsError, LostClaimError, ServiceError, TransientServiceError
from shared.outcomes import DELAYED, FAILED, NOT_RUNNING, STOPPED, InstanceNight
from shared.table_ledger import TableCancelLedger

TARGET = WorkspaceTarget("00000000-1111-2222-3333-444444444444", "ml-rg", "ml-ws")
NIGHT = Night(TARGET, date(2026, 11, 24), datetime(2026, 11, 24, 19, tzinfo=UTC))
AT = NIGHT.shutdown_at
NOW = datetime(2026, 11, 24, 19, 0, 5, tzinfo=UTC)
LEASE = timedelta(minutes=11)
STORAGE_SCOPE = "https://storage.azure.com/.default"
_tables = itertools.count(1)


class StaticToken:
    """A TokenCredential whose token Azurite's basic OAuth accepts: an unsigned JWT (Azurite checks
    lifetime, issuer and audience, never the signature). Records the scopes it was asked for."""

    def __init__(self, **claims):
        self.claims = claims
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "11111111-2222-3333-4444-555555555555",
            **self.claims,
        }
        return AccessToken(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.", now + 3600)


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


class NoIdentity:
    """What azure-identity raises when the Function App has no identity to sign in with."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def identity_storage(azurite_oauth, monkeypatch):
    """Trust Azurite's CA for this test (the integration session may point these at the stand-ins')."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "requests_ca_bundle", "ssl_cert_file"):
        monkeypatch.setenv(name, azurite_oauth.ca_file)
    azurite_oauth.start()  # no-op when running
    return azurite_oauth


@pytest.fixture(params=["cosmosdb", "data-tables", "data-tables-identity"])
def ledger_adapter(request):
    """A factory of ledgers on one table name (`make(table)`), for each adapter and connection form."""
    if request.param == "data-tables-identity":
        storage = request.getfixturevalue("identity_storage")
        suffix = next(_tables)  # Azurite with OAuth is shared by the module: a fresh table per test

        def make(table: str) -> DataTablesLedger:
            return DataTablesLedger(storage.table_endpoint, f"{table}{suffix}", StaticToken())

        return make
    azurite = request.getfixturevalue("azurite")
    if request.param == "cosmosdb":
        return lambda table: TableCancelLedger(azurite.connection_string, table)
    return lambda table: DataTablesLedger.from_connection_string(azurite.connection_string, table)


@pytest.fixture
def ledger(ledger_adapter):
    return ledger_adapter("nights")


def click(until=None, who="", instance="ci-a", at=AT) -> Cancellation:
    return Cancellation(TARGET.arm_id, instance, NIGHT.day, at, "203.0.113.7", "Mozilla/5.0", until, who)


# -------------------------------------------------- the Table adapter's behaviours, on every adapter
def test_before_any_write_nothing_is_recorded(ledger):
    # No table yet (it is created on the first write): every read means "nothing recorded".
    assert ledger.keep(NIGHT, "ci-a") is None
    assert ledger.kept_instances(NIGHT) == {}
    assert ledger.night_record(NIGHT, "sweep") is None


def test_a_claim_is_won_once_and_taken_over_only_after_its_lease(ledger):
    first = ledger.claim(NIGHT, "sweep", NOW, LEASE)
    assert first is not None and first.state == "running" and first.lease_until == NOW + LEASE
    assert ledger.claim(NIGHT, "sweep", NOW + timedelta(minutes=5), LEASE) is None  # still held
    second = ledger.claim(NIGHT, "sweep", NOW + LEASE + timedelta(seconds=1), LEASE)  # the holder died
    assert second is not None and second.version != first.version
    with pytest.raises(LostClaimError):
        ledger.save(first.progressed(("ci-a",), ()))  # the old holder's save cannot overwrite
    saved = ledger.save(second.progressed(("ci-a",), ()))
    assert ledger.claim(NIGHT, "sweep", NOW + timedelta(hours=1), LEASE) is None  # done: nothing to claim
    assert ledger.night_record(NIGHT, "sweep") == saved


def test_a_takeover_keeps_what_the_dead_holder_saved(ledger):
    first = ledger.claim(NIGHT, "sweep", NOW, LEASE)
    ledger.save(
        replace_state(first.with_kept(("ci-k",)).progressed(("ci-a",), ("ci-b: HTTP 500",)), "running")
    )
    taken = ledger.claim(NIGHT, "sweep", NOW + LEASE + timedelta(seconds=1), LEASE)
    assert (taken.done, taken.kept, taken.failures) == (("ci-a",), ("ci-k",), ("ci-b: HTTP 500",))


def replace_state(record: NightRecord, state: str) -> NightRecord:
    return replace(record, state=state)


def test_concurrent_claims_have_exactly_one_winner(ledger):
    won: list[NightRecord] = []

    def claim():
        record = ledger.claim(NIGHT, "mail", NOW, LEASE)
        if record:
            won.append(record)

    threads = [threading.Thread(target=claim) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1


def test_long_lists_survive_the_32k_character_limit_of_a_property(ledger):
    names = tuple(f"ci-instance-number-{n:05d}" for n in range(3_000))  # about 90,000 characters as JSON
    record = ledger.claim(NIGHT, "sweep", NOW, LEASE).with_kept(names[:10])
    saved = ledger.save(record.progressed(names, names))
    assert ledger.night_record(NIGHT, "sweep").done == names == saved.done
    assert ledger.night_record(NIGHT, "sweep").kept == names[:10]
    assert ledger.night_record(NIGHT, "sweep").failures == names
    shorter = ledger.save(saved.progressed((), ()))  # no failures left: no stale Failures_n behind
    assert ledger.night_record(NIGHT, "sweep") == shorter and shorter.failures == ()


def test_keeps_and_records_share_a_night_without_meeting(ledger):
    new, _ = ledger.record(NIGHT, click(instance="CI-Alice"))
    again, _ = ledger.record(NIGHT, click(instance="ci-alice"))
    assert new and not again  # one name, however it is spelled
    ledger.claim(NIGHT, "sweep", NOW, LEASE)
    assert set(ledger.kept_instances(NIGHT)) == {"CI-Alice"}  # the records are not keeps


def test_clicks_merge_latest_wins_and_marks_go_over_what_was_read(ledger):
    new, keep = ledger.record(NIGHT, click(AT + timedelta(hours=1), "a@contoso.com"))
    assert new and keep.until == AT + timedelta(hours=1) and keep.recipient == "a@contoso.com"
    assert ledger.record(NIGHT, click(AT + timedelta(minutes=30), "b@contoso.com"))[
        1
    ].until == AT + timedelta(hours=1)
    _, longer = ledger.record(NIGHT, click(AT + timedelta(hours=2), "b@contoso.com"))
    assert longer.until == AT + timedelta(hours=2) and ledger.keep(NIGHT, "CI-A").recipient == "b@contoso.com"
    assert ledger.mark(NIGHT, keep, stopping=True) is None  # read before the last click: refused
    marked = ledger.mark(NIGHT, longer, stopping=True)
    assert marked.stopping and ledger.kept_instances(NIGHT)["ci-a"].stopping
    assert ledger.record(NIGHT, click(None, "c@contoso.com"))[1].until == AT + timedelta(hours=2)  # stopping


def test_a_merged_keep_is_returned_as_a_read_shows_it(ledger):
    _, first = ledger.record(NIGHT, click(AT + timedelta(hours=1), "a@contoso.com", instance="CI-A"))
    reminded = ledger.mark(NIGHT, first, reminded=True)
    assert reminded.reminded_for == AT + timedelta(hours=1)
    _, merged = ledger.record(NIGHT, click(None, "b@contoso.com"))  # all night wins over an hour
    assert merged.until is None and merged.recipient == "b@contoso.com"
    read = ledger.keep(NIGHT, "ci-a")
    assert (read.until, read.recipient, read.reminded_for, read.version) == (
        None, "b@contoso.com", AT + timedelta(hours=1), merged.version,
    )  # fmt: skip


def test_concurrent_clicks_leave_one_keep_with_the_latest_stop_time(ledger):
    outcomes: list[tuple[bool, Keep]] = []
    delays = [60, 120, 60, 120, 60, 120, 60, 120]

    def press(minutes):
        outcomes.append(
            ledger.record(NIGHT, click(AT + timedelta(minutes=minutes), f"{minutes}@contoso.com"))
        )

    threads = [threading.Thread(target=press, args=(minutes,)) for minutes in delays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == len(delays) and sum(new for new, _ in outcomes) == 1
    assert ledger.keep(NIGHT, "ci-a").until == AT + timedelta(minutes=120)
    assert list(ledger.kept_instances(NIGHT)) == ["ci-a"]


def test_a_keep_deleted_between_a_failed_insert_and_the_reread_is_inserted_again(ledger):
    """Issue 19 item 9: the azure-cosmosdb-table ledger called `.later()` on None here (the bug page)."""
    ledger.record(NIGHT, click(None, "a@contoso.com"))
    real_keep, reads = ledger.keep, []

    def keep_deleted_meanwhile(night, instance):
        if not reads:  # somebody (an operator, a cleanup) deletes the keep right after our insert failed
            if isinstance(ledger, TableCancelLedger):
                ledger._service.delete_entity(ledger._table, night.key, instance.lower())
            else:
                ledger._client.delete_entity(night.key, instance.lower())
        reads.append(instance)
        return real_keep(night, instance)

    ledger.keep = keep_deleted_meanwhile
    new, keep = ledger.record(NIGHT, click(AT + timedelta(hours=1), "b@contoso.com"))
    assert new and keep.until == AT + timedelta(hours=1) and keep.recipient == "b@contoso.com"
    assert reads and real_keep(NIGHT, "ci-a").until == AT + timedelta(hours=1)


# ----------------------------------------------------------- one adapter writes, the other reads
@pytest.fixture(params=["cosmosdb->data-tables", "data-tables->cosmosdb"])
def writer_reader(request, azurite):
    cosmos = TableCancelLedger(azurite.connection_string, "switch")
    tables = DataTablesLedger.from_connection_string(azurite.connection_string, "switch")
    return (cosmos, tables) if request.param.startswith("cosmosdb") else (tables, cosmos)


def test_keeps_written_by_one_adapter_read_the_same_through_the_other(writer_reader):
    writer, reader = writer_reader
    writer.record(NIGHT, click(None, "night@contoso.com", instance="CI-Night"))
    _, delayed = writer.record(NIGHT, click(AT + timedelta(hours=1), "a@contoso.com", instance="ci-late"))
    writer.record(NIGHT, click(AT + timedelta(hours=2), "b@contoso.com", instance="ci-late"))  # merged
    writer.mark(NIGHT, writer.keep(NIGHT, "ci-late"), reminded=True)
    _, stopping = writer.record(NIGHT, click(AT + timedelta(hours=1), "c@contoso.com", instance="ci-stop"))
    writer.mark(NIGHT, stopping, stopping=True)
    written = writer.kept_instances(NIGHT)
    assert reader.kept_instances(NIGHT) == written  # every field, the ETag included
    assert {name: reader.keep(NIGHT, name.upper()) for name in written} == written
    late = written["ci-late"]
    assert (late.until, late.recipient, late.reminded_for) == (AT + timedelta(hours=2), "b@contoso.com",
                                                               AT + timedelta(hours=2))  # fmt: skip
    assert written["CI-Night"].until is None and written["ci-stop"].stopping
    # ... and the reader carries on over the writer's versions: merge, mark, stale mark refused.
    _, night = reader.record(NIGHT, click(None, "d@contoso.com", instance="ci-late"))
    assert night.until is None and night.recipient == "d@contoso.com"
    assert (
        writer.keep(NIGHT, "ci-late") == reader.keep(NIGHT, "ci-late")
        and night.version == reader.keep(NIGHT, "ci-late").version
    )
    assert reader.mark(NIGHT, late, stopping=True) is None  # `late` was read before that click
    assert writer.keep(NIGHT, "ci-late").stopping is False
    assert reader.record(NIGHT, click(None, "e@contoso.com", instance="ci-stop"))[1].stopping  # no change
    assert delayed.version != night.version


def test_night_records_written_by_one_adapter_are_taken_over_by_the_other(writer_reader):
    writer, reader = writer_reader
    names = tuple(f"ci-instance-number-{n:05d}" for n in range(2_000))  # split over several properties
    claimed = writer.claim(NIGHT, "sweep", NOW, LEASE)
    saved = writer.save(
        replace_state(claimed.with_kept(names[:5]).progressed(names, ("ci-x: HTTP 500",)), "running")
    )
    assert reader.night_record(NIGHT, "sweep") == saved
    assert reader.claim(NIGHT, "sweep", NOW + timedelta(minutes=5), LEASE) is None  # the writer holds it
    taken = reader.claim(NIGHT, "sweep", NOW + LEASE + timedelta(seconds=1), LEASE)
    assert (taken.done, taken.kept, taken.failures) == (names, names[:5], ("ci-x: HTTP 500",))
    with pytest.raises(LostClaimError):
        writer.save(saved.progressed((), ()))  # the writer's claim is gone
    done = reader.save(taken.progressed((), ()))
    assert writer.night_record(NIGHT, "sweep") == done and done.state == "done"
    assert (
        writer.claim(NIGHT, "mail", NOW, LEASE) is not None
        and reader.claim(NIGHT, "mail", NOW, LEASE) is None
    )


def test_a_keep_stored_before_delays_existed_keeps_the_instance_all_night(azurite):
    raw = TableService(connection_string=azurite.connection_string)
    raw.retry = no_retry
    raw.create_table("legacy")
    raw.insert_entity("legacy", {  # the shape of a keep before delays existed: no AllNight, no KeepUntil
        "PartitionKey": NIGHT.key, "RowKey": "ci-old", "Workspace": TARGET.arm_id, "Instance": "ci-old",
        "Day": NIGHT.day.isoformat(), "RequestedAt": AT - timedelta(hours=2), "ClientIp": "", "UserAgent": "",
    })  # fmt: skip
    ledger = DataTablesLedger.from_connection_string(azurite.connection_string, "legacy")
    keep = ledger.keep(NIGHT, "ci-old")
    assert keep == Keep("ci-old", None, "", None, False, keep.version, AT - timedelta(hours=2))
    assert ledger.kept_instances(NIGHT) == {"ci-old": keep}
    assert ledger.record(NIGHT, click(AT + timedelta(hours=1), instance="ci-old")) == (False, keep)
    assert ledger.mark(NIGHT, keep, stopping=True).stopping
    assert TableCancelLedger(azurite.connection_string, "legacy").keep(NIGHT, "ci-old").stopping


def test_both_adapters_store_the_same_properties_with_the_same_types(azurite):
    # Whole seconds: azure-cosmosdb-table writes datetimes without fractions, azure-data-tables with.
    at = AT.replace(microsecond=0)
    by_cosmos = TableCancelLedger(azurite.connection_string, "bycosmos")
    by_tables = DataTablesLedger.from_connection_string(azurite.connection_string, "bytables")
    for ledger in (by_cosmos, by_tables):
        ledger.record(NIGHT, click(at + timedelta(hours=1), "a@contoso.com", at=at))
        ledger.mark(NIGHT, ledger.keep(NIGHT, "ci-a"), stopping=True, reminded=True)
        record = ledger.claim(NIGHT, "sweep", at, LEASE)
        ledger.save(record.with_kept(("ci-a",)).progressed(("ci-b",), ()))
    raw = TableService(connection_string=azurite.connection_string)
    raw.retry = no_retry
    ignored = {"etag", "Timestamp"}

    def stored(table):
        return [
            {name: (type(value).__name__, value) for name, value in entity.items() if name not in ignored}
            for entity in raw.query_entities(table)
        ]

    assert stored("bycosmos") == stored("bytables")
    keep = stored("bytables")[0]
    assert keep["AllNight"] == ("bool", False) and keep["KeepUntil"][0] == "datetime"
    assert keep["Stopping"] == ("bool", True) and keep["RemindedFor"][0] == "datetime"


# ------------------------------------------------------------------------------ errors, no retries
@pytest.fixture
def gate(azurite):
    gate = TableGate(azurite.port).start()
    yield gate
    gate.stop()


def requests_seen(gate, at_least: int) -> int:
    """How many requests the gate has logged (it logs each one just after answering it)."""
    deadline = time.monotonic() + 2
    while len(gate.traffic.records()) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # room for a retry, had there been one
    return len(gate.traffic.records())


def gated(gate, azurite) -> DataTablesLedger:
    return DataTablesLedger.from_connection_string(gate.connection_string(azurite.connection_string), "gated")


def test_the_sdk_does_not_retry_and_a_throttle_says_how_long_to_wait(gate, azurite):
    ledger = gated(gate, azurite)
    gate.traffic.add_fault("table", status=503, headers={"Retry-After": "7"}, times=1)
    with pytest.raises(TransientServiceError) as caught:
        ledger.night_record(NIGHT, "sweep")
    assert caught.value.retry_after == 7 and "HTTP 503" in str(caught.value)
    assert requests_seen(gate, 1) == 1  # one request: shared.retry is the only retry layer
    gate.traffic.add_fault("table", status=500, times=1)
    with pytest.raises(TransientServiceError, match="claiming the sweep run: HTTP 500"):
        ledger.claim(NIGHT, "sweep", NOW, LEASE)
    assert requests_seen(gate, 2) == 2
    gate.traffic.add_fault("table", status=400, times=1)
    with pytest.raises(ServiceError, match="HTTP 400") as refused:
        ledger.kept_instances(NIGHT)
    assert not isinstance(refused.value, TransientServiceError)


def test_a_412_without_an_error_code_still_means_another_version(gate, azurite):
    ledger = gated(gate, azurite)
    record = ledger.claim(NIGHT, "sweep", NOW, LEASE)
    gate.traffic.add_fault("table", "PUT", status=412, body=b"", times=1)
    with pytest.raises(LostClaimError):
        ledger.save(record.progressed((), ()))
    _, keep = ledger.record(NIGHT, click(AT + timedelta(hours=1)))
    gate.traffic.add_fault("table", "PATCH", status=412, body=b"", times=1)
    assert ledger.mark(NIGHT, keep, stopping=True) is None


def test_a_hanging_table_service_times_out(gate, azurite, monkeypatch):
    monkeypatch.setattr(data_tables_ledger, "READ_TIMEOUT", 0.5)
    ledger = gated(gate, azurite)
    gate.traffic.add_fault("table", delay=3, times=1)
    started = time.monotonic()
    with pytest.raises(TransientServiceError, match="reading a cancellation"):
        ledger.keep(NIGHT, "ci-a")
    assert time.monotonic() - started < 2.5 and requests_seen(gate, 0) <= 1


def test_table_storage_down_is_transient_for_every_call(azurite):
    ledger = DataTablesLedger.from_connection_string(azurite.connection_string, "down")
    azurite.stop()
    calls = [
        lambda: ledger.record(NIGHT, click()),
        lambda: ledger.keep(NIGHT, "ci-a"),
        lambda: ledger.kept_instances(NIGHT),
        lambda: ledger.mark(NIGHT, Keep("ci-a", None, version='W/"x"'), stopping=True),
        lambda: ledger.night_record(NIGHT, "sweep"),
        lambda: ledger.claim(NIGHT, "sweep", NOW, LEASE),
        lambda: ledger.save(NightRecord(NIGHT.key, "sweep", "done", NOW, version='W/"x"')),
    ]
    for call in calls:
        with pytest.raises(TransientServiceError, match="Table Storage"):
            call()


def test_a_wrong_account_key_names_the_connection_setting(azurite):
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    with pytest.raises(CredentialsError, match=r"access denied \(HTTP 403.*AzureWebJobsStorage\)"):
        DataTablesLedger.from_connection_string(wrong, "denied").kept_instances(NIGHT)


# -------------------------------------------------------------------- identity-based storage
def test_the_identity_asks_for_a_storage_token_and_its_writes_are_read_with_the_account_key(identity_storage):
    token = StaticToken()
    ledger = DataTablesLedger(identity_storage.table_endpoint + "/", "identity", token)
    _, keep = ledger.record(NIGHT, click(AT + timedelta(hours=1), "a@contoso.com"))
    saved = ledger.save(
        ledger.claim(NIGHT, "sweep", NOW, LEASE).with_kept(("ci-a",)).progressed(("ci-b",), ())
    )
    assert token.scopes and set(token.scopes) == {(STORAGE_SCOPE,)}
    # The same table through a connection string (the old form, azure-cosmosdb-table): nothing lost.
    by_key = TableCancelLedger(identity_storage.connection_string, "identity")
    assert by_key.kept_instances(NIGHT) == {"ci-a": keep} and by_key.night_record(NIGHT, "sweep") == saved


@pytest.mark.parametrize(
    "claims",
    [{"aud": "https://management.azure.com"}, {"exp": 1_000_000_000}, {"iss": "https://evil.example/"}],
    ids=["audience", "expired", "issuer"],
)
def test_a_token_table_storage_refuses_names_the_identity_settings_and_the_role(identity_storage, claims):
    ledger = DataTablesLedger(identity_storage.table_endpoint, "refused", StaticToken(**claims))
    with pytest.raises(CredentialsError) as caught:
        ledger.night_record(NIGHT, "sweep")
    message = str(caught.value)
    assert "access denied (HTTP 403" in message and "Storage Table Data Contributor" in message
    assert "AzureWebJobsStorage__accountName" in message and "AzureWebJobsStorage__tableServiceUri" in message


def test_no_identity_to_sign_in_with_is_a_credentials_error(identity_storage):
    ledger = DataTablesLedger(identity_storage.table_endpoint, "noidentity", NoIdentity())
    with pytest.raises(CredentialsError, match="could not get a token for the Function App's identity"):
        ledger.claim(NIGHT, "mail", NOW, LEASE)


def test_the_module_needs_neither_azure_cosmosdb_nor_azureml():
    code = (
        "import sys, shared.data_tables_ledger; "
        "print([m for m in sys.modules if m.startswith(('azure.cosmosdb', 'azure.common', 'azureml'))])"
    )
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert run.stdout.strip() == "[]"


# ------------------------------------------------------- the app, switched between the two forms
# A storage test: its static token stands in for the app's identity towards Table Storage only.
@pytest.mark.parametrize("wire", ["azureml-core"], indirect=True)
def test_the_app_on_identity_based_storage_and_switched_back_and_forth_loses_nothing(
    wire, azurite_oauth, monkeypatch, tmp_path
):
    from shared.adapters import AdapterFactory

    # Trust both the stand-ins' CA (AzureML, SendGrid) and Azurite's (Table Storage over HTTPS).
    bundle = tmp_path / "cas.pem"
    bundle.write_text(Path(wire.standins.ca_file).read_text() + Path(azurite_oauth.ca_file).read_text())
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "requests_ca_bundle", "ssl_cert_file"):
        monkeypatch.setenv(name, str(bundle))
    token = StaticToken()
    monkeypatch.setattr(AdapterFactory, "credential", lambda self: token)  # the app's identity
    table = f"evening{next(_tables)}"

    def identity_based():
        wire.environ.pop("AzureWebJobsStorage", None)
        wire.environ.update(
            AzureWebJobsStorage__tableServiceUri=azurite_oauth.table_endpoint, cancel_table=table
        )
        wire.configure(AzureWebJobsStorage=None)

    def connection_string():
        wire.environ.pop("AzureWebJobsStorage__tableServiceUri", None)
        wire.environ["AzureWebJobsStorage"] = azurite_oauth.connection_string
        wire.configure(AzureWebJobsStorage__tableServiceUri=None)

    for name in ("ci-a", "ci-b"):
        wire.standins.azureml.seed(name, "Running", created_by=f"{name}@contoso.com")
    identity_based()
    wire.mail()
    link = wire.link("ci-a")
    assert wire.click("POST", link, delay="60").status_code == 200
    assert token.scopes and set(token.scopes) == {(STORAGE_SCOPE,)}
    connection_string()  # the sweep reads the mail record and the keep the identity wrote
    wire.mail(at=wire.MAIL_AT + timedelta(minutes=5))
    assert len(wire.mails()) == 1  # the night's mail run is done, whoever wrote its record
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-b"]
    identity_based()  # 20:40: the whole night after all, over the version the other adapter wrote
    wire.now = wire.SWEEP_AT + timedelta(minutes=40)
    assert "ci-a keeps running tonight" in wire.click("POST", link, delay="night").get_body().decode()
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=60))
    connection_string()
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=65))
    assert wire.standins.stopped_names() == ["ci-b"]
    env = wire.environ
    night = Night(
        WorkspaceTarget(env["subscription_id"], env["resource_group"], env["aml_workspace"]), NIGHT.day, AT
    )
    record = TableCancelLedger(azurite_oauth.connection_string, table).night_record(night, "sweep")
    assert record.state == "done" and record.done == ("ci-b",)
    assert DataTablesLedger(azurite_oauth.table_endpoint, table, token).keep(night, "ci-a").until is None


# -------------------------------------------------- the morning-after report's rows, on every adapter
def test_report_rows_round_trip_in_batches_and_are_read_by_month_apart_from_the_keeps(ledger_adapter):
    ledger = ledger_adapter("rows")
    ledger.record(NIGHT, click(instance="ci-0"))  # a keep in the same partition stays a keep
    rows = [
        InstanceNight(f"ci-{n}", STOPPED, "STANDARD_DS3_V2", "westeurope", AT, None, "", "", 12.0, 3.0)
        for n in range(130)  # more than one transaction of 100
    ]
    rows.append(
        InstanceNight("ci-kept", DELAYED, None, None, None, AT + timedelta(hours=1), "bob@contoso.com")
    )
    ledger.record_outcomes(NIGHT, rows)
    earlier = Night(TARGET, date(2026, 10, 30), datetime(2026, 10, 30, 19, tzinfo=UTC))
    ledger.record_outcomes(earlier, [InstanceNight("ci-old", FAILED, detail="AzureML: HTTP 500")])
    other = Night(WorkspaceTarget(TARGET.subscription_id, "other-rg", "ml-ws"), NIGHT.day, AT)
    ledger.record_outcomes(other, [InstanceNight("ci-elsewhere", STOPPED, hours=1.0)])

    november = ledger.outcomes(TARGET, date(2026, 11, 1), date(2026, 11, 30))
    assert list(november) == [NIGHT.day] and len(november[NIGHT.day]) == 131
    found = {row.instance: row for row in november[NIGHT.day]}
    assert found["ci-7"] == rows[7] and found["ci-kept"] == rows[-1]
    assert ledger.outcomes(TARGET, date(2026, 10, 1), date(2026, 10, 31)) == {earlier.day: [
        InstanceNight("ci-old", FAILED, detail="AzureML: HTTP 500")]}  # fmt: skip
    assert set(ledger.kept_instances(NIGHT)) == {"ci-0"}
    ledger.record_outcomes(
        NIGHT, [replace(rows[7], outcome=NOT_RUNNING, saving=None)]
    )  # replaced, not merged
    assert {r.instance: r for r in ledger.outcomes(TARGET, NIGHT.day, NIGHT.day)[NIGHT.day]}[
        "ci-7"
    ].saving is None
