"""ComputeShutdown's use case over the fakes: what a tick stops, claims, records and reports."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import Cancellation, Instance, StopOutcome
from shared.errors import RunFailedError, TransientServiceError
from shared.retry import RetryPolicy
from shared.settings import Settings
from shared.shutdown_calendar import ShutdownCalendar
from shared.sweep import FRESH_FOR, SweepOptions, stop_unclaimed_instances
from tests.fakes import FakeLedger, FakeWorkspace, environ

SWEEP_AT = datetime(2026, 11, 24, 19, 0, 2, tzinfo=UTC)  # the 20:00 Berlin shutdown, two seconds in
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda s: None)


def fleet() -> FakeWorkspace:
    return FakeWorkspace(
        Instance("ci-alice", "Running", "alice@contoso.com"),
        Instance("ci-bob", "Running", "bob@contoso.com"),
        Instance("ci-carol", "Stopped"),
        Instance("ci-dave", "JobRunning"),
        Instance("ci-erin", "Stopping"),
    )


def calendar(**overrides) -> ShutdownCalendar:
    settings = Settings.from_environ(environ(**overrides))
    return ShutdownCalendar(settings.target(), settings.calendar_rules())


def keep(ledger: FakeLedger, name: str, at: datetime = SWEEP_AT, **overrides) -> None:
    night = calendar(**overrides).next_night(at - timedelta(hours=1))
    ledger.record(night, Cancellation(night.target.arm_id, name, night.day, at))


def sweep(workspace, ledger, at=SWEEP_AT, dry_run=False, clock=None, max_parallel=16, budget=5, **overrides):
    kwargs = {"clock": clock} if clock else {}
    options = SweepOptions(dry_run=dry_run, max_parallel=max_parallel)
    cal = calendar(**overrides)
    if night := cal.sweep_due(at):
        ledger.told(night, *workspace.instances)  # the warning mail told about every instance an hour ago
    return stop_unclaimed_instances(
        at, cal, workspace, ledger, options, NO_WAIT, stop_budget=budget, **kwargs
    )


def test_stops_running_instances_except_the_kept_ones_with_a_single_ledger_query(caplog):
    caplog.set_level(logging.INFO)
    workspace, ledger = fleet(), FakeLedger()
    keep(ledger, "ci-bob")
    report = sweep(workspace, ledger)
    assert workspace.stop_calls == ["ci-alice"]
    assert len(ledger.queries) == 1
    assert report.stopped == ("ci-alice",)
    assert (
        "ComputeShutdown for the night of 2026-11-24 in workspace 00000000-1111-2222-3333-444444444444/ml-rg/"
        "ml-ws: stopped 1, kept by request 1, busy with a job 1, "
        "not running 2, opted out 0, restarted after tonight's stop 0, delayed 0, late notice 0, failed 0"
    ) in caplog.text


def test_a_tick_with_nothing_due_makes_no_remote_call_at_all():
    workspace, ledger = fleet(), FakeLedger()
    for minutes in range(0, 24 * 60, 5):
        at = datetime(2026, 11, 25, 1, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        # the night's windows from 20:00 Berlin: the sweep until 22:00, delayed stops until 00:00 and a late
        # notice's stop until 00:30, then the audit hour
        if minutes < 18 * 60:
            assert sweep(workspace, ledger, at=at) is None
    assert workspace.calls == 0 and ledger.calls == 0


def test_a_keep_for_another_night_or_workspace_does_not_count():
    workspace, ledger = fleet(), FakeLedger()
    keep(ledger, "ci-bob", at=SWEEP_AT - timedelta(days=1))
    keep(ledger, "ci-alice", resource_group="other-rg")  # same workspace name, another resource group
    sweep(workspace, ledger)
    assert sorted(workspace.stop_calls) == ["ci-alice", "ci-bob"]


def test_two_ticks_sweep_a_night_once():
    workspace, ledger = fleet(), FakeLedger()
    sweep(workspace, ledger)
    assert sweep(workspace, ledger, at=SWEEP_AT + timedelta(minutes=5)) is None
    assert workspace.stop_calls == ["ci-alice", "ci-bob"] and workspace.list_calls == 1


def test_ledger_unreadable_means_nothing_is_stopped_and_a_later_tick_retries(caplog, monkeypatch):
    workspace, ledger = fleet(), FakeLedger()
    refused = TransientServiceError("Table Storage", "refused")
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "kept_instances", lambda night: (_ for _ in ()).throw(refused))
        with pytest.raises(TransientServiceError):
            sweep(workspace, ledger)
    assert workspace.stop_calls == [] and "nothing was stopped" in caplog.text
    sweep(workspace, ledger, at=SWEEP_AT + timedelta(minutes=5))  # the night was left incomplete
    assert sorted(workspace.stop_calls) == ["ci-alice", "ci-bob"]


def test_one_failing_instance_never_keeps_the_others_running_and_is_retried_by_a_later_tick(caplog):
    workspace, ledger = FakeWorkspace(*(Instance(f"ci-{n}", "Running") for n in range(6))), FakeLedger()
    workspace.stop_errors["ci-3"] = [TransientServiceError("AzureML", "HTTP 500")] * 3
    with pytest.raises(RunFailedError) as failed:
        sweep(workspace, ledger)
    assert workspace.stopped == ["ci-0", "ci-1", "ci-2", "ci-4", "ci-5"]
    assert list(failed.value.failures) == ["ci-3"]
    assert "failed 1 [ci-3 (AzureML: HTTP 500)]" in caplog.text
    report = sweep(workspace, ledger, at=SWEEP_AT + timedelta(minutes=5))  # incomplete: claimable again
    assert report.stopped == ("ci-3",) and workspace.stop_calls.count("ci-0") == 1


def test_an_instance_restarted_by_its_owner_after_the_stop_is_not_stopped_again():
    workspace, ledger = fleet(), FakeLedger()
    workspace.stop_errors["ci-bob"] = [TransientServiceError("AzureML", "HTTP 500")] * 3
    with pytest.raises(RunFailedError):
        sweep(workspace, ledger)
    workspace.set_state("ci-alice", "Running")  # its owner started it again
    report = sweep(workspace, ledger, at=SWEEP_AT + timedelta(minutes=5))
    assert report.stopped == ("ci-bob",) and workspace.stop_calls.count("ci-alice") == 1
    assert [i.name for i in report.plan.stopped_before] == ["ci-alice"]


def test_a_stop_is_not_sent_on_a_stale_read_the_instance_is_listed_again():
    workspace, ledger = fleet(), FakeLedger()
    now = [0.0]

    def slow_stop(name, original=workspace.stop):
        now[0] += FRESH_FOR + 1  # each stop takes longer than a read stays fresh
        if name == "ci-alice":
            workspace.set_state("ci-bob", "JobRunning")  # a job starts on bob meanwhile
        return original(name)

    workspace.stop = slow_stop
    report = sweep(workspace, ledger, clock=lambda: now[0], max_parallel=1, budget=60)
    assert workspace.stop_calls == ["ci-alice"] and workspace.list_calls == 2  # bob re-listed, not stopped
    assert report.outcomes["ci-bob"] is StopOutcome.BUSY


def test_a_busy_instance_is_never_stopped_even_if_it_became_busy_after_the_listing():
    workspace = fleet()
    original = workspace.stop
    workspace.stop = lambda name: StopOutcome.BUSY if name == "ci-alice" else original(name)
    report = sweep(workspace, FakeLedger())
    assert report.stopped == ("ci-bob",) and report.outcomes["ci-alice"] is StopOutcome.BUSY


def test_opted_out_instances_are_left_alone_and_counted(caplog):
    caplog.set_level(logging.INFO)
    workspace = FakeWorkspace(
        Instance("ci-a", "Running", tags=(("Auto-Shutdown", "OFF"),)),
        Instance("ci-b", "Running", tags=(("auto-shutdown", "2026-11-24"),)),  # up to and including today
        Instance("ci-c", "Running", tags=(("auto-shutdown", "2026-11-23"),)),  # expired yesterday
        Instance("ci-d", "Running", tags=(("auto-shutdown", "maybe"),)),
    )
    report = sweep(workspace, FakeLedger())
    assert report.stopped == ("ci-c", "ci-d")
    assert "opted out 2" in caplog.text
    assert "ci-d: tag auto-shutdown='maybe' is neither off/false/no/never nor a date" in caplog.text


def test_named_instances_missing_from_the_workspace_fail_the_run_after_the_others_stop():
    workspace = fleet()
    with pytest.raises(RunFailedError, match="ci-ghost: not found"):
        sweep(workspace, FakeLedger(), aml_compute_instance="ci-alice, ci-ghost")
    assert workspace.stop_calls == ["ci-alice"]


def test_dry_run_stops_nothing_but_says_what_it_would_do(caplog):
    caplog.set_level(logging.INFO)
    workspace = fleet()
    report = sweep(workspace, FakeLedger(), dry_run=True)
    assert workspace.stop_calls == []
    assert report.stopped == ("ci-alice", "ci-bob")
    assert "Dry run: would stop ci-alice" in caplog.text and "would stop 2" in caplog.text


def test_a_night_nobody_swept_is_recorded_missed_and_fails_one_run_only(caplog):
    workspace, ledger = fleet(), FakeLedger()
    after_window = SWEEP_AT + timedelta(hours=2, minutes=5)
    with pytest.raises(RunFailedError, match="missed"):
        sweep(workspace, ledger, at=after_window)
    assert sweep(workspace, ledger, at=after_window + timedelta(minutes=5)) is None  # once
    assert workspace.calls == 0  # nothing is stopped once the window has closed


def test_a_skipped_day_says_why_in_one_line_and_calls_nothing(caplog):
    caplog.set_level(logging.INFO)
    workspace, ledger = fleet(), FakeLedger()
    assert sweep(workspace, ledger, skip_dates="2026-11-24") is None
    assert "no shutdown on 2026-11-24: 2026-11-24 is in skip_dates" in caplog.text
    assert workspace.calls == 0 and ledger.calls == 0


def test_a_re_listing_gives_a_failing_instance_no_new_tries():
    workspace, ledger = fleet(), FakeLedger()
    now = [0.0]
    workspace.stop_errors["ci-alice"] = [TransientServiceError("AzureML", "HTTP 503")] * 10

    def slow_stop(name, original=workspace.stop):
        now[0] += FRESH_FOR / 2  # two tries and the listing is stale: list again
        return original(name)

    workspace.stop = slow_stop
    with pytest.raises(RunFailedError, match="ci-alice"):
        sweep(workspace, ledger, clock=lambda: now[0], max_parallel=1, budget=600)
    assert workspace.stop_calls.count("ci-alice") == 3  # NO_WAIT's three tries, across re-listings
    assert workspace.list_calls >= 2 and "ci-bob" in workspace.stopped


def test_stops_an_adapter_holds_back_for_arms_write_bucket_are_no_tries():
    workspace, ledger = FakeWorkspace(*(Instance(f"ci-{n}", "Running") for n in range(6))), FakeLedger()
    now = [0.0]
    held = {f"ci-{n}": 5 for n in range(6)}  # each is held back five times before its turn comes

    def paced_stop(name, original=workspace.stop):
        now[0] += 1
        if held[name]:
            held[name] -= 1
            now[0] += FRESH_FOR  # waiting for its turn outlived the listing: list again
            return StopOutcome.STALE
        return original(name)

    workspace.stop = paced_stop
    report = sweep(workspace, ledger, clock=lambda: now[0], max_parallel=1, budget=10_000)
    assert sorted(report.stopped) == [f"ci-{n}" for n in range(6)] and report.failures == {}
