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
    assert [(e["PartitionKey"], e["RowKey"]) for e in wire.ledger()] == [
        ("ws-standin:2026-11-24", "ci-alice")
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


def test_a_click_while_the_listing_runs_is_honoured(wire):
    """The sweep reads the ledger after listing the instances: a click recorded meanwhile counts."""
    aml = wire.standins.azureml
    aml.seed("ci-alice", "Running")
    aml.seed("ci-bob", "Running")
    wire.mail()
    link = wire.link("ci-alice")
    wire.standins.add_fault("azureml", "GET", r"/computes$", delay=1.0)  # a slow listing
    sweeper = threading.Thread(target=wire.sweep)
    sweeper.start()
    deadline = time.monotonic() + 15
    while not wire.standins.records(service="arm", method="GET", path_regex=r"/workspaces/[^/]+$"):
        assert time.monotonic() < deadline, "the sweep never opened the workspace"
        time.sleep(0.01)  # once the workspace is open, the (slow) listing is next
    wire.now = wire.SWEEP_AT - timedelta(seconds=30)  # the click happens just before the shutdown time
    page = wire.click("POST", link)
    wire.now = wire.SWEEP_AT
    sweeper.join(30)
    assert page.status_code == 200 and "keeps running tonight" in page.get_body().decode()
    assert wire.standins.stopped_names() == ["ci-bob"]
    assert aml.instance("ci-alice") == "Running"


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
    assert page.status_code == 410 and "has already begun" in body and "start it again" in body
    assert wire.ledger() == [] and wire.standins.stopped_names() == ["ci-alice"]
