"""Many clicks at once, and clicks while the sweep runs, against Azurite and the stand-ins."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

SHUTDOWN = "ComputeShutdown for the night of"


def test_a_hundred_concurrent_clicks_on_one_link_leave_exactly_one_record(wire):
    wire.standins.azureml.seed("ci-alice", "Running")
    wire.mail()
    link = wire.link("ci-alice")
    with ThreadPoolExecutor(max_workers=100) as pool:
        responses = list(pool.map(lambda _: wire.click("POST", link), range(100)))
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.get_body() for r in responses} == {responses[0].get_body()}  # all see the same success
    assert [(e["PartitionKey"].rsplit("|", 1)[1], e["RowKey"]) for e in wire.ledger()] == [
        ("2026-11-24", "ci-alice")
    ]


def test_clicks_for_fifty_instances_at_once_leave_fifty_records(wire):
    names = [f"ci-{n:02d}" for n in range(50)]
    for name in names:
        wire.standins.azureml.seed(name, "Running")
    wire.mail()
    links = [wire.link(name) for name in names]
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda link: wire.click("POST", link).status_code, links))
    assert statuses == [200] * 50
    assert sorted(e["RowKey"] for e in wire.ledger()) == names


def test_a_keep_that_lands_after_the_sweep_read_the_keeps_is_told_the_truth(wire):
    """A host whose clock runs 30 s slow still takes a click for tonight while another host sweeps. The
    sweep's claim closed the night and it has stored the keeps it honours: the keep is too late, and
    the page says so instead of promising a night it will not get."""
    aml = wire.standins.azureml
    aml.seed("ci-alice", "Running")
    aml.seed("ci-bob", "Running")
    wire.mail()
    link = wire.link("ci-alice")
    wire.standins.add_fault(wire.list_service, "GET", r"/computes$", delay=1.0)  # a slow listing
    sweeper = threading.Thread(target=wire.sweep)
    sweeper.start()
    deadline = time.monotonic() + 15
    while "Kept" not in wire.night_records().get("sweep", {}):
        assert time.monotonic() < deadline, "the sweep never stored the keeps it honours"
        time.sleep(0.01)
    wire.now = wire.SWEEP_AT - timedelta(seconds=30)  # the slow host: before the shutdown, it thinks
    page = wire.click("POST", link)
    wire.now = wire.SWEEP_AT
    sweeper.join(30)
    body = page.get_body().decode()
    assert page.status_code == 410 and "began just before your request arrived" in body
    assert "keeps running" not in body
    assert sorted(wire.standins.stopped_names()) == ["ci-alice", "ci-bob"]


def test_a_click_after_the_shutdown_began_is_told_so_truthfully(wire):
    aml = wire.standins.azureml
    aml.seed("ci-alice", "Running")
    wire.mail()
    link = wire.link("ci-alice")
    wire.standins.add_fault("arm", "POST", r"/stop$", delay=1.0)  # the stop is in flight for a while
    sweeper = threading.Thread(target=wire.sweep)
    sweeper.start()  # sets the clock to the shutdown time
    page = wire.click("POST", link)
    sweeper.join(30)
    body = page.get_body().decode()
    assert page.status_code == 410 and "ci-alice was stopped by the shutdown on" in body
    assert "Start ci-alice again from Azure ML studio" in body
    assert wire.ledger() == [] and wire.standins.stopped_names() == ["ci-alice"]
