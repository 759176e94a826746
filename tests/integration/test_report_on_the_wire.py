"""The morning-after report over the real SDKs and the stand-ins: prices from the Retail Prices stand-in,
rows and the report's claim in Azurite, the mail through the SendGrid stand-in (schema-checked)."""

import base64
import csv
import io
import re

from shared.errors import RunFailedError

FINOPS = "finops@contoso.com"


def report_of(wire) -> dict:
    (mail,) = wire.standins.sendgrid.mails_to(FINOPS)
    return mail


def csv_of(mail) -> list[dict]:
    (attached,) = mail["attachments"]
    return list(csv.DictReader(io.StringIO(base64.b64decode(attached["content"]).decode("utf-8-sig"))))


def test_the_report_names_each_stop_with_its_size_and_the_saving_at_the_stand_ins_price(wire):
    aml, prices = wire.standins.azureml, wire.standins.prices
    prices.clear()
    prices.seed_price("westeurope", "Standard_DS3_v2", 0.25, windows=0.5, spot=0.05, low_priority=0.06)
    prices.seed_price("westeurope", "Standard_NC6s_v3", 3.5)
    aml.seed("ci-alice", vm_size="STANDARD_DS3_V2")
    aml.seed("ci-gpu", vm_size="STANDARD_NC6S_V3")
    aml.seed("ci-bob", state="JobRunning")
    wire.configure(report_emails=FINOPS)
    wire.sweep()  # Tuesday 20:00 in Berlin: both stopped until Wednesday 08:00, 12 h
    text = wire.standins.sendgrid.content_of(report_of(wire), "text/plain")
    assert "* ci-alice (STANDARD_DS3_V2): stopped at 20:00, 3.00 USD" in text
    assert "* ci-gpu (STANDARD_NC6S_V3): stopped at 20:00, 42.00 USD" in text
    assert "* ci-bob (STANDARD_DS3_V2): busy with a job" in text
    assert "Estimated saving tonight: 45.00 USD (2 stops)" in text
    rows = csv_of(report_of(wire))
    assert sum(float(r["saving"]) for r in rows if r["saving"]) == 45.0
    assert re.search(r"November so far: 45\.00 USD", text)
    assert "ComputeShutdown" not in text and wire.standins.count("prices") == 2  # one ask per size


def test_two_ticks_and_a_second_host_send_one_report(wire):
    wire.standins.azureml.seed("ci-alice")
    wire.configure(report_emails=FINOPS)
    wire.sweep()
    wire.sweep(wire.SWEEP_AT.replace(minute=5))
    wire.sweep(wire.SWEEP_AT.replace(minute=40))
    assert len(wire.standins.sendgrid.mails_to(FINOPS)) == 1
    assert wire.night_records()["report"]["State"] == "done"


def test_with_the_prices_api_down_the_report_goes_out_with_hours(wire):
    wire.standins.azureml.seed("ci-alice")
    wire.standins.add_fault("prices", status=503, times=20)
    wire.configure(report_emails=FINOPS)
    wire.sweep()
    text = wire.standins.sendgrid.content_of(report_of(wire), "text/plain")
    assert "* ci-alice (STANDARD_DS3_V2): stopped at 20:00, 12 h" in text
    assert "Estimated saving tonight: 0.00 USD + 12 h unpriced (1 stop)" in text


def test_a_report_that_cannot_be_sent_fails_the_run_and_goes_out_on_the_next_tick(wire):
    wire.standins.azureml.seed("ci-alice")
    wire.configure(report_emails=FINOPS)
    wire.standins.add_fault("sendgrid", "POST", status=500, times=4)
    try:
        wire.sweep()
    except RunFailedError as failed:
        assert "the report for the night of 2026-11-24" in str(failed)
    else:
        raise AssertionError("the run should have failed")
    assert wire.standins.azureml.instance("ci-alice") != "Running"  # the sweep did its work regardless
    wire.sweep(wire.SWEEP_AT.replace(minute=5))
    assert len(wire.standins.sendgrid.mails_to(FINOPS)) == 1
