"""The whole evening through the three entry points, over the real SDKs, on the wire."""

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema

from loopback.sendgrid import SCHEMA_FILE

NIGHT_KEY = "3b1c0d7e-0000-4000-8000-000000005ab5|rg-ml-standin|ws-standin|2026-11-24"  # the stand-in's ids


def seed_evening(aml) -> None:
    aml.seed("ci-alice", "Running", created_by="alice@contoso.com")
    aml.seed("ci-bob", "Running", created_by="bob@contoso.com")
    aml.seed("ci-carol", "Stopped", created_by="carol@contoso.com")
    aml.seed("ci-dave", "JobRunning", created_by="dave@contoso.com")
    aml.seed("cluster-gpu", "Running", compute_type="AmlCompute")


def test_mail_then_click_then_sweep(wire):
    seed_evening(wire.standins.azureml)
    wire.mail()

    (mail,) = wire.mails()
    text = wire.standins.sendgrid.content_of(mail, "text/plain")
    assert mail["subject"] == "Compute instances stop tonight – ci-alice, ci-bob, ci-dave"
    assert "ci-carol" not in json.dumps(mail) and "cluster-gpu" not in json.dumps(mail)
    assert (
        text.count("Keep it running tonight: https://autoshutdown.example.net/api/CancelShutDown?code=") == 3
    )

    link = wire.link("ci-bob")
    shown = wire.click("GET", link)
    assert shown.status_code == 200 and '<form method="post" class="choices">' in shown.get_body().decode()
    assert wire.ledger() == []  # GET never writes

    clicked = wire.click("POST", link, {"X-Forwarded-For": "198.51.100.4", "User-Agent": "Edge/130"})
    assert clicked.status_code == 200
    (entity,) = wire.ledger()
    assert (entity["PartitionKey"], entity["RowKey"]) == (NIGHT_KEY, "ci-bob")
    assert entity["Workspace"].endswith(
        "/resourceGroups/rg-ml-standin/providers/Microsoft.MachineLearningServices/workspaces/ws-standin"
    )
    assert (entity["ClientIp"], entity["UserAgent"]) == ("198.51.100.4", "Edge/130")
    assert entity["RequestedAt"].isoformat().startswith("2026-11-24T16:00")

    again = wire.click("POST", link)
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda _: wire.click("POST", link), range(16)))
    assert again.get_body() == clicked.get_body()
    assert {r.status_code for r in concurrent} == {200}
    assert len(wire.ledger()) == 1

    wire.standins.traffic.clear_log()
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-alice"]
    assert wire.standins.azureml.instance("ci-bob") == "Running"
    assert wire.standins.azureml.instance("ci-dave") == "JobRunning"
    assert wire.standins.azureml.instance("cluster-gpu") == "Running"
    stops = wire.standins.records(service="arm", method="POST", path_regex=r"/stop$")
    assert [r.path.rsplit("/", 2)[-2] for r in stops] == ["ci-alice"]


def test_one_named_instance(wire):
    seed_evening(wire.standins.azureml)
    wire.configure(aml_compute_instance="ci-bob")
    wire.mail()
    (mail,) = wire.mails()
    assert mail["subject"].endswith("– ci-bob")
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-bob"]
    assert wire.standins.azureml.instance("ci-alice") == "Running"


def test_a_list_of_names(wire):
    seed_evening(wire.standins.azureml)
    wire.configure(aml_compute_instance="ci-alice, ci-carol,ci-dave")
    wire.sweep()
    assert wire.standins.stopped_names() == ["ci-alice"]  # carol is stopped, dave is busy
    assert wire.standins.azureml.instance("ci-bob") == "Running"


def test_every_instance_over_several_pages(wire):
    aml = wire.standins.azureml
    aml.page_size = 4
    for n in range(11):
        aml.seed(f"ci-{n:02d}", "Running", created_by=f"user{n}@contoso.com")
    aml.seed("ci-idle", "Stopped")
    wire.configure(notify_instance_owner="true")
    wire.mail()
    pages = wire.standins.records(service=wire.list_service, method="GET", path_regex=r"/computes$")
    assert len(pages) == 3  # 12 computes, 4 per page, nextLink followed
    assert len(wire.mails()) == 12  # the team + 11 owners, one mail each
    (team,) = wire.standins.sendgrid.mails_to("ml-team@contoso.com")
    assert "and 8 more" in team["subject"]
    wire.sweep()
    assert sorted(wire.standins.stopped_names()) == [f"ci-{n:02d}" for n in range(11)]


def test_every_mail_we_send_is_valid_against_sendgrids_schema(wire):
    seed_evening(wire.standins.azureml)
    validator = jsonschema.Draft4Validator(
        json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
    )
    variants = [
        {"notify_instance_owner": "true", "from_email": "Auto-shutdown <noreply@contoso.com>"},
        {"from_email": "noreply@contoso.com", "subject": "Ünïcode & <angle> subject"},
        # 16:00 UTC is 08:00 in Los Angeles: a 10:00 shutdown there is in its warning window
        {
            "to_emails": "a@contoso.com; b@contoso.com",
            "time_zone": "America/Los_Angeles",
            "shutdown_time": "10:00",
        },
    ]
    for n, variant in enumerate(variants):
        wire.standins.sendgrid.reset()
        wire.configure(cancel_table=f"variant{n}", **variant)  # a fresh ledger: each variant mails anew
        wire.mail()
        assert wire.mails(), variant
        for mail in wire.mails():
            assert list(validator.iter_errors(mail)) == []
            assert mail["tracking_settings"]["click_tracking"]["enable"] is False
            assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
    assert wire.standins.count(service="sendgrid", status=400) == 0
