"""The morning-after report over fakes: once per night after the last workspace's sweep, the saving per
stop, hours when prices are down, failures and missed nights first, and a CSV that sums to the mail."""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from shared import app
from shared.domain import Cancellation, Instance, WorkspaceTarget
from shared.errors import AutoShutdownError, RunFailedError, TransientServiceError
from shared.outcomes import FAILED, InstanceNight
from shared.report import report_day
from shared.report_view import WorkspaceNight, to_csv
from shared.settings import Settings
from tests.fakes import SINGLE_WORKSPACE_OFF, FakeLedger, FakeMailer, FakeWorkspace, environ

SUB = "3b1c0d7e-0000-4000-8000-00000000000a"
BERLIN_SWEEP = datetime(2026, 11, 24, 19, tzinfo=UTC)  # Tuesday 20:00 in Berlin
NEW_YORK_SWEEP = datetime(2026, 11, 25, 1, tzinfo=UTC)  # Tuesday 20:00 in New York
PRICES = {("westeurope", "STANDARD_DS3_V2"): 0.25, ("eastus", "STANDARD_DS3_V2"): 0.2}


class Prices:
    def __init__(self):
        self.down = False

    def hourly_price(self, region, size, currency):
        if self.down:
            raise TransientServiceError("Retail Prices", "HTTP 503")
        return PRICES.get((region, size))


class World:
    def __init__(self, berlin_group="rg-eu", **overrides):
        entries = [
            {"subscription_id": SUB, "resource_group": berlin_group, "workspace": "ws-berlin",
             "time_zone": "Europe/Berlin"},
            {"subscription_id": SUB, "resource_group": "rg-us", "workspace": "ws-new-york",
             "time_zone": "America/New_York"},
        ]  # fmt: skip
        values = {
            "report_emails": "finops@contoso.com",
            "shutdown_days": "Mon-Fri",
            "holidays": "",
            **overrides,
        }
        env = environ(**SINGLE_WORKSPACE_OFF, aml_workspaces=json.dumps(entries), **values)
        self.settings = Settings.from_environ(env)
        self.spaces = {
            "ws-berlin": FakeWorkspace(
                vm("ci-alice", "westeurope"), vm("ci-bob", "westeurope", "JobRunning")
            ),
            "ws-new-york": FakeWorkspace(
                vm("ci-alice", "eastus"), vm("ci-gpu", "eastus", size="STANDARD_NC6S_V3")
            ),
        }
        self.ledger, self.mailer, self.prices = FakeLedger(told=self._told), FakeMailer(), Prices()

    def _told(self, night) -> list[str]:
        return list(self.spaces[night.target.name].instances)  # the evening's mail told about them all

    def tick(self, at):
        the_app = app.bootstrap(self.settings, workspaces=lambda s, r, name: self.spaces[name], ledger=self.ledger,
                                mailer=self.mailer, prices=self.prices, clock=lambda: at, sleep=lambda s: None)  # fmt: skip
        return the_app.compute_shutdown()

    def reports(self):
        return [m for m in self.mailer.sent if m.to == "finops@contoso.com"]


def vm(name, region, state="Running", size="STANDARD_DS3_V2"):
    return Instance(name, state, f"{name}@contoso.com", (), size, region)


def csv_rows(mail) -> list[dict]:
    (attached,) = mail.attachments
    return list(csv.DictReader(io.StringIO(attached.content.decode("utf-8-sig"))))


def test_the_report_waits_for_the_last_zone_then_goes_out_once():
    world = World()
    world.tick(BERLIN_SWEEP)
    assert world.reports() == []  # New York has not swept yet
    world.tick(NEW_YORK_SWEEP)
    (report,) = world.reports()
    assert report.subject == "Auto-shutdown report for the night of Tuesday 24 November 2026"
    assert (
        "== ws-berlin (resource group rg-eu)" in report.text
        and "== ws-new-york (resource group rg-us)" in report.text
    )
    # Berlin: 20:00 -> 08:00 = 12 h x 0.25; New York: 12 h x 0.20, and the GPU size has no price.
    assert "* ci-alice (STANDARD_DS3_V2): stopped at 20:00, 3.00 USD" in report.text
    assert "* ci-alice (STANDARD_DS3_V2): stopped at 20:00, 2.40 USD" in report.text
    assert "* ci-gpu (STANDARD_NC6S_V3): stopped at 20:00, 12 h" in report.text
    assert "* ci-bob (STANDARD_DS3_V2): busy with a job" in report.text
    assert "Estimated saving tonight: 5.40 USD + 12 h unpriced (3 stops)" in report.text
    for later in (NEW_YORK_SWEEP + timedelta(minutes=5), NEW_YORK_SWEEP + timedelta(minutes=30)):
        world.tick(later)
    assert len(world.reports()) == 1


def test_the_csv_has_a_row_per_instance_and_night_and_sums_to_the_mail():
    world = World()
    for day in range(3):  # Tuesday to Thursday
        for at in (BERLIN_SWEEP, NEW_YORK_SWEEP):
            for space in world.spaces.values():  # owners start their instances again in the morning
                for name in list(space.instances):
                    if space.instances[name].state == "Stopped":
                        space.set_state(name, "Running")
            world.tick(at + timedelta(days=day))
    last = world.reports()[-1]
    rows = csv_rows(last)
    assert len(world.reports()) == 3 and len(rows) == 3 * 4
    assert {r["night"] for r in rows} == {"2026-11-24", "2026-11-25", "2026-11-26"}
    month = sum(float(r["saving"]) for r in rows if r["saving"])
    assert f"November so far: {month:.2f} USD" in last.text
    assert month == pytest.approx(3 * 5.40)
    assert rows[0].keys() >= {"night", "workspace", "instance", "outcome", "vm_size", "saving", "currency"}


def test_with_the_prices_api_down_the_report_still_goes_out_with_hours():
    world = World()
    world.prices.down = True
    world.tick(BERLIN_SWEEP)
    world.tick(NEW_YORK_SWEEP)
    (report,) = world.reports()
    assert "Estimated saving tonight: 0.00 USD + 36 h unpriced (3 stops)" in report.text
    assert (
        "No list price for STANDARD_DS3_V2 in eastus, STANDARD_DS3_V2 in westeurope, STANDARD_NC6S_V3 in eastus"
        in report.text
    )
    assert "* ci-alice (STANDARD_DS3_V2): stopped at 20:00, 12 h" in report.text


def test_failures_and_missed_nights_come_first():
    world = World()
    world.spaces["ws-berlin"].stop_errors["ci-alice"] = [TransientServiceError("AzureML", "HTTP 500")] * 9
    with pytest.raises(RunFailedError):
        world.tick(BERLIN_SWEEP)
    # New York's host was down all night: its window closes unswept.
    with pytest.raises(RunFailedError):
        world.tick(NEW_YORK_SWEEP + timedelta(hours=4, minutes=35))
    (report,) = world.reports()
    attention = report.text.split("NEEDS ATTENTION")[1].split("Estimated saving")[0]
    assert "ws-new-york (rg-us): the night was missed" in attention
    assert "ws-berlin (rg-eu): ci-alice was not stopped" in attention


def test_no_report_emails_no_report_and_no_remote_call_outside_its_window():
    world = World(report_emails="")
    world.tick(BERLIN_SWEEP)
    world.tick(NEW_YORK_SWEEP)
    assert world.reports() == []
    quiet = World()
    calls = quiet.ledger.calls
    quiet.tick(datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert quiet.ledger.calls == calls


def test_the_report_day_spans_every_zone():
    world = World()
    calendars = app.bootstrap(world.settings, ledger=world.ledger).estate.calendars()
    assert report_day(BERLIN_SWEEP, calendars)[0] == date(2026, 11, 24)
    assert report_day(NEW_YORK_SWEEP + timedelta(hours=2), calendars)[0] == date(2026, 11, 24)
    assert report_day(datetime(2026, 11, 24, 12, tzinfo=UTC), calendars) is None


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list: what makes a spreadsheet cell a formula


def spreadsheet(content: bytes) -> list[dict[str, tuple[str, object]]]:
    """The rows as a spreadsheet opening the file shows them, each cell (kind, value): a leading `'`
    marks text (and is not shown), a leading trigger makes a formula, what parses as a number is one."""

    def cell(raw: str) -> tuple[str, object]:
        if raw.startswith("'"):
            return "text", raw[1:]
        if raw.startswith(FORMULA_TRIGGERS):
            return "formula", raw
        try:
            return "number", float(raw)
        except ValueError:
            return "text", raw

    header, *rows = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    return [dict(zip(header, map(cell, row), strict=True)) for row in rows]


def formulas(rows) -> list:
    return [value for row in rows for kind, value in row.values() if kind == "formula"]


def test_a_hostile_cell_reaches_the_csv_as_text_not_a_formula():
    recipient = "+cmd|'/Ccalc'!A0@contoso.com"  # a valid address in to_emails
    detail = "@SUM(1+1)*cmd|' /C calc'!A0"
    world = World(berlin_group="-rg-eu")  # Azure allows a leading hyphen in resource group names
    calendars = app.bootstrap(world.settings, ledger=world.ledger).estate.calendars()
    berlin = next(c for c in calendars if c.target.name == "ws-berlin").night(date(2026, 11, 24))
    world.ledger.record(berlin, Cancellation(berlin.target.arm_id, "ci-alice", berlin.day,
                                             BERLIN_SWEEP - timedelta(hours=1), recipient=recipient))  # fmt: skip
    world.spaces["ws-berlin"].instances["ci-carol"] = vm("ci-carol", "westeurope")
    world.spaces["ws-berlin"].stop_errors["ci-carol"] = [AutoShutdownError(detail)] * 9
    with pytest.raises(RunFailedError):
        world.tick(BERLIN_SWEEP)
    world.tick(NEW_YORK_SWEEP)
    world.tick(NEW_YORK_SWEEP + timedelta(hours=4, minutes=35))  # Berlin's failure held it back till now
    (report,) = world.reports()
    (attached,) = report.attachments
    rows = spreadsheet(attached.content)
    assert formulas(rows) == []
    shown = {(r["workspace"][1], r["instance"][1]): r for r in rows}
    alice, carol = shown[("ws-berlin", "ci-alice")], shown[("ws-berlin", "ci-carol")]
    assert (alice["resource_group"], alice["kept_by"]) == (("text", "-rg-eu"), ("text", recipient))
    assert carol["detail"] == ("text", detail)
    assert shown[("ws-new-york", "ci-alice")]["saving"] == ("number", 2.40)  # figures stay numbers


@pytest.mark.parametrize("trigger", FORMULA_TRIGGERS)
def test_every_formula_trigger_is_neutralised_and_plain_text_is_left_alone(trigger):
    target = WorkspaceTarget(SUB, f"{trigger}rg", "ws-berlin")
    day = date(2026, 11, 24)
    row = InstanceNight("ci-alice", FAILED, "STANDARD_DS3_V2", "westeurope", detail=f"{trigger}1+1 failed")
    part = WorkspaceNight(target, UTC, day, BERLIN_SWEEP, month={day: [row]})
    (found,) = spreadsheet(to_csv([part], "USD"))
    assert (found["resource_group"], found["detail"]) == (
        ("text", f"{trigger}rg"),
        ("text", f"{trigger}1+1 failed"),
    )
    assert (found["instance"], found["hours"]) == (("text", "ci-alice"), ("number", 0.0))
