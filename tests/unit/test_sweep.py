import logging
from datetime import UTC, date, datetime

import pytest

from shared.domain import Cancellation, Instance
from shared.errors import RunFailedError, TransientServiceError
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.sweep import stop_unclaimed_instances
from tests.fakes import FakeLedger, FakeWorkspace, environ

SWEEP_AT = datetime(2026, 11, 24, 19, 0, 2, tzinfo=UTC)  # the 20:00 Berlin run, two seconds in
NIGHT = date(2026, 11, 24)
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda s: None)


def fleet() -> FakeWorkspace:
    return FakeWorkspace(
        Instance("ci-alice", "Running", "alice@contoso.com"),
        Instance("ci-bob", "Running", "bob@contoso.com"),
        Instance("ci-carol", "Stopped"),
        Instance("ci-dave", "JobRunning"),
        Instance("ci-erin", "Stopping"),
    )


def keep(ledger: FakeLedger, name: str, day=NIGHT, workspace="ml-ws") -> None:
    ledger.record(Cancellation(workspace, name, day, SWEEP_AT))


def sweep(workspace, ledger, **overrides):
    settings = Settings.from_environ(environ(**overrides))
    return stop_unclaimed_instances(settings, workspace, ledger, SWEEP_AT, policy=NO_WAIT, stop_budget=5)


def test_stops_running_instances_except_the_kept_ones_with_a_single_ledger_query(caplog):
    caplog.set_level(logging.INFO)
    workspace, ledger = fleet(), FakeLedger()
    keep(ledger, "ci-bob")
    report = sweep(workspace, ledger)
    assert workspace.stop_calls == ["ci-alice"]
    assert ledger.queries == [("ml-ws", NIGHT)]
    assert report.stopped == ("ci-alice",)
    assert (
        "ComputeShutdown for the night of 2026-11-24: stopped 1, kept by request 1, busy with a job 1, "
        "not running 2, failed 0"
    ) in caplog.text


def test_a_cancellation_for_another_night_or_workspace_does_not_count():
    workspace, ledger = fleet(), FakeLedger()
    keep(ledger, "ci-bob", day=date(2026, 11, 23))
    keep(ledger, "ci-alice", workspace="other-ws")
    sweep(workspace, ledger)
    assert sorted(workspace.stop_calls) == ["ci-alice", "ci-bob"]


def test_ledger_unreadable_means_nothing_is_stopped_and_the_run_fails(caplog):
    workspace, ledger = fleet(), FakeLedger()
    ledger.errors = [TransientServiceError("Table Storage", "refused")] * 3
    with pytest.raises(TransientServiceError):
        sweep(workspace, ledger)
    assert workspace.stop_calls == []
    assert "stopped 0" in caplog.text and "nothing was stopped" in caplog.text


def test_one_failing_instance_never_keeps_the_others_running(caplog):
    workspace = FakeWorkspace(*(Instance(f"ci-{n}", "Running") for n in range(6)))
    workspace.stop_errors["ci-3"] = [TransientServiceError("AzureML", "HTTP 500")] * 5
    with pytest.raises(RunFailedError) as failed:
        sweep(workspace, FakeLedger())
    assert workspace.stopped == ["ci-0", "ci-1", "ci-2", "ci-4", "ci-5"]
    assert list(failed.value.failures) == ["ci-3"]
    assert "failed 1 [ci-3 (AzureML: HTTP 500)]" in caplog.text


def test_transient_stop_failures_are_retried():
    workspace = fleet()
    workspace.stop_errors["ci-alice"] = [TransientServiceError("AzureML", "HTTP 429", retry_after=0)]
    sweep(workspace, FakeLedger())
    assert workspace.stop_calls.count("ci-alice") == 2 and "ci-alice" in workspace.stopped


def test_an_instance_that_stopped_meanwhile_is_not_an_error():
    workspace = fleet()
    original = workspace.stop
    workspace.stop = lambda name: False if name == "ci-alice" else original(name)
    report = sweep(workspace, FakeLedger())
    assert report.already_stopped == ("ci-alice",) and report.failures == {}


def test_named_instances_missing_from_the_workspace_fail_the_run_after_the_others_stop():
    workspace = fleet()
    with pytest.raises(RunFailedError, match="ci-ghost: not found"):
        sweep(workspace, FakeLedger(), aml_compute_instance="ci-alice, ci-ghost")
    assert workspace.stop_calls == ["ci-alice"]


def test_dry_run_stops_nothing_but_says_what_it_would_do(caplog):
    caplog.set_level(logging.INFO)
    workspace = fleet()
    report = sweep(workspace, FakeLedger(), dry_run="true")
    assert workspace.stop_calls == []
    assert report.stopped == ("ci-alice", "ci-bob")
    assert "Dry run: would stop ci-alice" in caplog.text and "would stop 2" in caplog.text


def test_a_second_sweep_stops_nothing_and_does_not_fail():
    workspace, ledger = fleet(), FakeLedger()
    sweep(workspace, ledger)
    calls = len(workspace.stop_calls)
    report = sweep(workspace, ledger)
    assert len(workspace.stop_calls) == calls and report.stopped == () and report.failures == {}


def test_a_late_sweep_after_midnight_still_reads_the_evening_cancellations():
    workspace, ledger = fleet(), FakeLedger()
    keep(ledger, "ci-alice", day=date(2026, 11, 24))
    settings = Settings.from_environ(environ(shutdown_schedule="0 59 22 * * *"))  # 23:59 Berlin
    late = datetime(2026, 11, 24, 23, 5, tzinfo=UTC)  # 00:05 Berlin, next day
    stop_unclaimed_instances(settings, workspace, ledger, late, policy=NO_WAIT)
    assert ledger.queries == [("ml-ws", date(2026, 11, 24))]
    assert "ci-alice" not in workspace.stop_calls
