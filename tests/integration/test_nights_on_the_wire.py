"""The calendar's promises over the real SDKs: Azurite's Table Storage and the AzureML stand-in."""

import importlib
import logging
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest

from shared.domain import Night, NightRecord, WorkspaceTarget
from shared.errors import LostClaimError, RunFailedError
from shared.table_ledger import TableCancelLedger

STOP = r"/computes/{}/stop$"
NIGHT = Night(WorkspaceTarget("00000000-1111-2222-3333-444444444444", "ml-rg", "ml-ws"), date(2026, 11, 24),
              datetime(2026, 11, 24, 19, tzinfo=UTC))  # fmt: skip
NOW = datetime(2026, 11, 24, 19, 0, 5, tzinfo=UTC)
LEASE = timedelta(minutes=11)


def seed(wire, *names, **tags):
    for name in names:
        wire.standins.azureml.seed(name, "Running", created_by=f"{name}@contoso.com", tags=tags.get(name))


def test_two_concurrent_ticks_sweep_the_night_once(wire):
    seed(wire, "ci-a", "ci-b", "ci-c")
    wire.now = wire.SWEEP_AT
    wire.told(wire.SWEEP_AT)
    sweep = importlib.import_module("ComputeShutdown").main
    ticks = [threading.Thread(target=sweep, args=(TimerRequest(),)) for _ in range(2)]
    for tick in ticks:
        tick.start()
    for tick in ticks:
        tick.join(30)
    assert sorted(wire.standins.stopped_names()) == ["ci-a", "ci-b", "ci-c"]
    for name in ("ci-a", "ci-b", "ci-c"):
        assert wire.standins.count("arm", "POST", STOP.format(name)) == 1
    assert wire.night_records()["sweep"]["State"] == "done"


def test_an_opt_out_tag_as_azureml_core_reads_it_keeps_the_instance_out(wire, caplog):
    caplog.set_level(logging.INFO)
    seed(
        wire,
        "ci-a",
        "ci-b",
        "ci-c",
        **{"ci-b": {"Auto-Shutdown": "Never"}, "ci-c": {"auto-shutdown": "2026-11-30"}},
    )
    wire.mail()
    (mail,) = wire.mails()
    text = wire.standins.sendgrid.content_of(mail, "text/plain")
    assert "ci-a" in text and "ci-b" not in text and "Not stopped: 2 instances opted out" in text
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-a"]
    assert "opted out 2" in caplog.text


def test_an_instance_restarted_after_its_stop_is_not_stopped_again_when_a_later_tick_retries(wire):
    seed(wire, "ci-a", "ci-b")
    wire.standins.add_fault("arm", "POST", STOP.format("ci-b"), status=500)
    with pytest.raises(RunFailedError, match="ci-b"):
        wire.sweep()
    assert wire.standins.stopped_names() == ["ci-a"]
    wire.standins.traffic.clear_faults()  # ARM recovers
    wire.standins.azureml.seed("ci-a", "Running", created_by="ci-a@contoso.com")  # its owner starts it again
    wire.sweep(at=wire.SWEEP_AT + timedelta(minutes=5))  # the next tick finishes the night
    assert wire.standins.count("arm", "POST", STOP.format("ci-a")) == 1
    assert wire.standins.azureml.instance("ci-a") == "Running" and "ci-b" in wire.standins.stopped_names()


def test_nothing_is_stopped_outside_the_window_even_by_an_admin_call(wire):
    seed(wire, "ci-a")
    wire.sweep(at=wire.SWEEP_AT - timedelta(minutes=30))  # the admin call in the afternoon is a tick
    wire.sweep(at=wire.SWEEP_AT + timedelta(hours=12))  # the next morning: the window closed long ago
    assert wire.standins.stopped_names() == [] and wire.standins.count("arm") == 0


# ----------------------------------------------------------------------------- the Table adapter
@pytest.fixture
def ledger(azurite):
    return TableCancelLedger(azurite.connection_string, "nights")


def test_a_claim_is_won_once_and_taken_over_only_after_its_lease(ledger):
    first = ledger.claim(NIGHT, "sweep", NOW, LEASE)
    assert first is not None and first.state == "running"
    assert ledger.claim(NIGHT, "sweep", NOW + timedelta(minutes=5), LEASE) is None  # still held
    second = ledger.claim(NIGHT, "sweep", NOW + LEASE + timedelta(seconds=1), LEASE)  # the holder died
    assert second is not None and second.version != first.version
    with pytest.raises(LostClaimError):
        ledger.save(first.progressed(("ci-a",), ()))  # the old holder's save cannot overwrite
    saved = ledger.save(second.progressed(("ci-a",), ()))
    assert ledger.claim(NIGHT, "sweep", NOW + timedelta(hours=1), LEASE) is None  # done: nothing to claim
    assert ledger.night_record(NIGHT, "sweep") == saved


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
    saved = ledger.save(record.progressed(names, ()))
    assert ledger.night_record(NIGHT, "sweep").done == names == saved.done
    assert ledger.night_record(NIGHT, "sweep").kept == names[:10]


def test_keeps_and_records_share_a_night_without_meeting(ledger):
    from shared.domain import Cancellation

    new, _ = ledger.record(NIGHT, Cancellation(NIGHT.target.arm_id, "CI-Alice", NIGHT.day, NOW))
    again, _ = ledger.record(NIGHT, Cancellation(NIGHT.target.arm_id, "ci-alice", NIGHT.day, NOW))
    assert new and not again  # one name, however it is spelled
    ledger.claim(NIGHT, "sweep", NOW, LEASE)
    assert set(ledger.kept_instances(NIGHT)) == {"CI-Alice"}  # the records are not keeps
