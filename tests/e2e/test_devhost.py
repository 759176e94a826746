"""`make run` in a fresh process: the demo walkthrough, following the steps the demo prints, over HTTP.

The demo serves two workspaces through `aml_workspaces`, in two time zones: ws-demo's shutdown is
normally three minutes or so after start, the second workspace's a minute later in its own local time.
Here ws-demo's comes `--shutdown-in` 25 s (at the first whole minute after that, since shutdown_time is
HH:MM), so the walkthrough does what is due before the shutdown, then waits for each printed instant
and runs the printed admin call: at most about 145 s of waiting, about 115 s on average, for the module.
"""

import base64
import csv
import html
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devhost.demo import away_zone_name, shutdown_instant
from tests.e2e.conftest import ROOT, DevHost, PrintedWorkspace, mail_group

LEAD = 25  # seconds from start to the earliest shutdown: start, mail, click and an early call fit in
POLL = 0.6  # the demo tells the stand-ins' state changes within 0.2 s; wait a little longer before "nothing"
TEAM = "ml-team@contoso.com"
FINOPS = "finops@contoso.com"  # the demo's report_emails


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    host = DevHost(tmp_path_factory.mktemp("outbox"), shutdown_in=LEAD)
    try:
        yield host
    finally:
        host.stop()


@dataclass(frozen=True)
class Steps:
    """What the printed steps tell a person to do, read back from the console."""

    mail: Path
    click: str
    click_under: str
    shutdown_times: dict[str, str]  # workspace -> HH:MM on this machine's clock, as "Wait until" says
    away_local: str  # the second workspace's shutdown time in its own zone, as step 3 says
    ticks: str  # what the five-minute ticks do by themselves
    curl: str
    summaries: list[str]  # the four lines of step 4: a summary and a total per sweep
    report_to: str  # step 5: who gets the morning-after report
    report_files: str  # where it lands: <outbox>/<time>-<n>-<address>.html
    report_subject: str
    hourly: dict[str, float]  # workspace -> the list price (USD/h) the prices stand-in serves its instances

    @classmethod
    def printed_by(cls, output: str) -> "Steps":
        def after(label: str) -> str:
            return re.search(re.escape(label) + r"\s*\n\s*(\S.*)", output).group(1).strip()

        waits = re.findall(r"Wait until (\d\d:\d\d), (\S+)'s shutdown time", output)
        return cls(
            mail=Path(after("in a browser:")),
            click=re.search(r'click "([^"]+)"', output).group(1),
            click_under=re.search(r"under (\S+), click", output).group(1),
            shutdown_times={workspace: at for at, workspace in waits},
            away_local=re.search(r"'s shutdown time \((\d\d:\d\d) in (\S+)\)", output).group(1),
            ticks=re.search(r"Or let the five-minute ticks do it:\s+(.*?)\.\n", output, re.DOTALL).group(1),
            curl=after("and run the sweep:"),
            summaries=re.findall(r"^ {7}(ComputeShutdown .*)$", output, re.MULTILINE),
            report_to=re.search(r"the morning-after report to (\S+) \(report_emails\)", output).group(1),
            report_files=re.search(r"The console names its file, (\S+);", output).group(1),
            report_subject=re.search(r'Subject "([^"]+)"', output).group(1),
            hourly={
                workspace: float(price)
                for price, workspace in re.findall(r"(\d+\.\d+) USD/h in\s+\S+\s+\((\S+)\)", output)
            },
        )


def follow(host: DevHost, command: str) -> int:
    """Run a printed `curl -X POST <url> -H <header> -d <body>` as it is written, through urllib."""
    words = shlex.split(command)
    assert words[:3] == ["curl", "-X", "POST"] and words[4] == "-H" and words[6] == "-d", command
    name, _, value = words[5].partition(": ")
    mark = len(host.lines)
    status, _, _ = host.request("POST", words[3], words[7].encode(), {name: value})
    if status == 202:
        function = words[3].rsplit("/", 1)[1]
        host.wait_for_line(f"Executed 'Functions.{function}'", after=mark)
    return status


def app_lines(lines: list[str]) -> list[str]:
    """Lines that are not the dev host's own (Host.*): the app's log and the demo's stand-in news."""
    return [line for line in lines if not re.match(r"\[[^]]+\] Host\.", line)]


def anchors(body: str) -> dict[str, str]:
    """text -> link of every anchor in a piece of mail HTML."""
    return {
        text: html.unescape(href) for href, text in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', body)
    }


def says(line: str, printed: str) -> bool:
    """Whether a logged line is the printed one, followed by the night's estimated saving as the printed
    steps say (`, saving 1.23 USD`): the figure itself depends on the minute of the stop."""
    message = re.fullmatch(r"\[[^]]+\] \S+: (.*)", line).group(1)
    return re.fullmatch(re.escape(printed) + r", saving \d+\.\d\d USD", message) is not None


def reports(demo: DevHost, to: str) -> list[dict]:
    """Every mail to `to` in the outbox, as SendGrid took it (the .json beside each .html)."""
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted(demo.outbox.glob(f"*-{to}.json"))]


class _Texts(HTMLParser):
    """The text pieces of some HTML, one per run of text between tags, trimmed, in order."""

    def __init__(self, body: str):
        super().__init__()
        self.pieces: list[str] = []
        self.feed(body)

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.pieces.append(" ".join(data.split()))


def report_rows(body: str, workspace: str, instances: set[str]) -> dict[str, tuple[str, str]]:
    """instance -> (what happened, saving as shown, or "") in the report's part about `workspace`: the
    text after each instance's name, up to the next one's (whatever the table's layout)."""
    rows: dict[str, list[str]] = {}
    current = None
    for piece in _Texts(mail_group(body, workspace)).pieces:
        if piece in instances:
            current = rows.setdefault(piece, [])
        elif current is not None:
            current.append(piece)
    what = re.compile(r"(stopped at|kept all night|delayed until|busy with|opted out|not running|failed).*")
    return {
        instance: (
            " ".join(p for p in pieces if what.fullmatch(p)),
            " ".join(p for p in pieces if re.fullmatch(r"\d+\.\d\d USD", p)),
        )
        for instance, pieces in rows.items()
    }


def attached_csv(mail: dict) -> tuple[str, list[dict[str, str]]]:
    """The report's CSV attachment (base64 in the SendGrid body): its file name and rows."""
    (attachment,) = [a for a in mail.get("attachments", []) if a["type"] == "text/csv"]
    text = base64.b64decode(attachment["content"], validate=True).decode("utf-8-sig")
    return attachment["filename"], list(csv.DictReader(io.StringIO(text)))


def sweep_at(demo: DevHost, steps: Steps, workspace: PrintedWorkspace) -> int:
    """Wait for `workspace`'s shutdown and run the printed call (or the five-minute tick has, if it came
    first); return where its log lines start."""
    mark = len(demo.lines)
    time.sleep(max(0.0, (workspace.shutdown_at - datetime.now(UTC)).total_seconds()) + 0.1)
    assert follow(demo, steps.curl) == 202
    return mark


def test_the_demo_is_two_workspaces_in_two_zones_a_minute_apart(demo):
    home, away = demo.workspaces
    here = demo.machine_zone
    assert (home.name, home.resource_group, home.zone) == ("ws-demo", "rg-demo", here)
    assert away.name != home.name and away.resource_group != home.resource_group
    assert away.zone.key == away_zone_name(here, home.shutdown_at)  # New York, unless date or clock differ
    assert away.shutdown_at.astimezone(away.zone).utcoffset() != away.shutdown_at.astimezone(here).utcoffset()
    #  Both nights are of one local date (whatever the time of day here), so one report covers both.
    assert away.shutdown_at.astimezone(away.zone).date() == home.shutdown_at.astimezone(here).date()
    for workspace in (home, away):  # each shutdown_time means its instant in its own zone
        assert f"{workspace.shutdown_at.astimezone(workspace.zone):%H:%M}" == workspace.shutdown_time
        assert workspace.shutdown_at.second == 0
    assert away.shutdown_at - home.shutdown_at == timedelta(minutes=1)
    assert home.shutdown_at == demo.shutdown_at


@pytest.mark.timeout(300)  # waits for both shutdowns: up to LEAD + 120 s after the start
def test_the_demo_walkthrough_as_printed(demo):
    steps = Steps.printed_by(demo.output)
    home, away = demo.workspaces
    here = demo.machine_zone
    assert steps.shutdown_times == {w.name: f"{w.shutdown_at.astimezone(here):%H:%M}" for w in (home, away)}
    assert steps.away_local == away.shutdown_time
    night = {w.name: w.shutdown_at.astimezone(w.zone).date() for w in (home, away)}
    assert steps.summaries == [
        f"ComputeShutdown for the night of {night[home.name]} in workspace {home.label}: stopped 2, "
        "kept by request 1, busy with a job 1, not running 1, opted out 1, restarted after tonight's stop 0, "
        "delayed 0, late notice 0, failed 0",
        "ComputeShutdown total over 1 workspace(s): stopped 2, kept by request 1, busy with a job 1, "
        "not running 1, opted out 1, restarted after tonight's stop 0, delayed 0, late notice 0, failed 0",
        f"ComputeShutdown for the night of {night[away.name]} in workspace {away.label}: stopped 3, "
        "kept by request 0, busy with a job 0, not running 1, opted out 0, restarted after tonight's stop 0, "
        "delayed 0, late notice 0, failed 0",
        "ComputeShutdown total over 1 workspace(s): stopped 3, kept by request 0, busy with a job 0, "
        "not running 1, opted out 0, restarted after tonight's stop 0, delayed 0, late notice 0, failed 0",
    ]

    # 1. One mail per recipient, in the outbox already: the team's, under the name printed, covers both
    #    workspaces, in the order of aml_workspaces, each with its own shutdown time.
    assert steps.mail.parent == demo.outbox.resolve() and steps.mail.name.endswith(f"-{TEAM}.html")
    mail = steps.mail.read_text(encoding="utf-8")
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", mail) == [home.name, away.name]
    assert "7 compute instances will be stopped" in mail and "2 workspaces stop their running" in mail
    assert "Not stopped in ws-demo: 1 instance opted out with the <code>auto-shutdown</code> tag." in mail
    assert "ci-frank" not in mail and not list(demo.outbox.glob("*-frank@contoso.com.*"))
    for workspace, names in ((home, {"ci-alice", "ci-bob", "ci-dave", "ci-erin"}),
                             (away, {"ci-alice", "ci-bob", "ci-grace"})):  # fmt: skip
        group = mail_group(mail, workspace.name)
        assert set(re.findall(r"Keep (ci-\w+)(?: in [\w-]+)? running", group)) == names
        assert f"at {workspace.shutdown_at.astimezone(workspace.zone):%H:%M} " in group  # its own local time
    #    An owner with an instance in each workspace gets one mail about both; others one about theirs.
    alice = demo.newest_mail("alice@contoso.com")[0].read_text(encoding="utf-8")
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", alice) == [home.name, away.name]
    assert len(list(demo.outbox.glob("*-alice@contoso.com.json"))) == 1
    grace = demo.newest_mail("grace@contoso.com")[0].read_text(encoding="utf-8")
    assert f"Workspace <strong>{away.name}</strong>" in grace and f"<strong>{home.name}</strong>" not in grace
    assert "SendGrid stand-in accepted a mail to ml-team@contoso.com" in demo.output

    # 2. The link with the printed text, under the printed workspace, opens the confirmation; only the
    #    button keeps the instance, and only in that workspace.
    assert steps.click_under == home.name
    link = anchors(mail_group(mail, home.name))[steps.click]
    assert link.startswith(f"http://localhost:{demo.port}/api/CancelShutDown?token=")
    status, headers, page = demo.request("GET", link)
    assert (
        status == 200
        and '<form method="post" class="choices">' in page
        and headers["Cache-Control"] == "no-store"
    )
    assert 'name="delay" value="60"' in page and 'name="delay" value="night"' in page
    assert 'ws-demo <span class="muted">(resource group rg-demo)</span>' in page
    status, _, page = demo.request("POST", link, b"", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and "ci-alice keeps running tonight" in page
    #    The same instance name in the other workspace has its own link, and nobody kept it.
    (other,) = [href for text, href in anchors(mail_group(mail, away.name)).items() if "ci-alice" in text]
    assert other != link
    status, _, page = demo.request("GET", other)
    assert (
        status == 200
        and f'{away.name} <span class="muted">(resource group {away.resource_group})</span>' in page
    )
    assert "Tonight's automatic shutdown will stop this compute instance." in page  # no keep in force

    # 3. Before the shutdown time the printed admin call is a tick like any other: it does nothing.
    assert datetime.now(UTC) < home.shutdown_at - timedelta(seconds=2), "the demo started too slowly"
    mark = len(demo.lines)
    assert follow(demo, steps.curl) == 202
    time.sleep(POLL)
    assert datetime.now(UTC) < home.shutdown_at
    assert app_lines(demo.lines[mark:]) == []  # no summary, no stop, no remote call worth a line
    assert "AzureML stand-in:" not in demo.output  # every instance is as seeded: nothing was stopped

    #    From ws-demo's shutdown time on, the same call sweeps ws-demo, and only ws-demo.
    mark = sweep_at(demo, steps, home)
    # 4. Its summary line and the tick's total are the ones printed; the stand-in stopped ci-bob and
    #    ci-erin of ws-demo, nothing in the other workspace.
    summary = demo.wait_for_line("ComputeShutdown for the night of", after=mark)
    assert says(summary, steps.summaries[0]), summary
    total = demo.wait_for_line("ComputeShutdown total over", after=demo.lines.index(summary))
    assert says(total, steps.summaries[1]), total
    assert any("Keeping ci-alice running tonight" in line for line in demo.lines[mark:])
    for name in ("ci-bob", "ci-erin"):
        demo.wait_for_line(f"AzureML stand-in: {home.name}/{name} Running -> Stopping", after=mark)
        demo.wait_for_line(f"AzureML stand-in: {home.name}/{name} Stopping -> Stopped", after=mark)
    time.sleep(POLL)
    assert datetime.now(UTC) < away.shutdown_at, "the sweep of ws-demo took too long for this test"
    assert f"AzureML stand-in: {away.name}/" not in demo.output
    assert sum("ComputeShutdown for the night of" in line for line in app_lines(demo.lines[mark:])) == 1
    assert reports(demo, steps.report_to) == []  # the report waits for the other workspace's night

    #    A minute later, at its own local time, the other workspace: the same call sweeps it. Its
    #    ci-alice is stopped with the rest: the keep was for ws-demo's.
    mark = sweep_at(demo, steps, away)
    summary = demo.wait_for_line(f"in workspace {away.label}:", after=mark)
    assert says(summary, steps.summaries[2]), summary
    total = demo.wait_for_line("ComputeShutdown total over", after=demo.lines.index(summary))
    assert says(total, steps.summaries[3]), total
    for name in ("ci-alice", "ci-bob", "ci-grace"):
        demo.wait_for_line(f"AzureML stand-in: {away.name}/{name} Running -> Stopping", after=mark)
        demo.wait_for_line(f"AzureML stand-in: {away.name}/{name} Stopping -> Stopped", after=mark)

    # 5. The same tick, both nights of the date swept, mailed the morning-after report: one mail, to
    #    the report address, in the file the console names, matching the pattern printed.
    assert steps.report_to == FINOPS
    told = demo.wait_for_line(f"SendGrid stand-in accepted a mail to {FINOPS}: ", after=mark)
    (report,) = reports(demo, FINOPS)
    report_file = demo.outbox / told.rsplit(": ", 1)[1]
    pattern = Path(steps.report_files)
    assert pattern.parent == demo.outbox.resolve() and pattern.name == f"<time>-<n>-{FINOPS}.html"
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-\d{{4}}-{re.escape(FINOPS)}\.html", report_file.name)
    assert [t["email"] for p in report["personalizations"] for t in p["to"]] == [FINOPS]
    day = home.shutdown_at.astimezone(here).date()
    subject = f"Auto-shutdown report for the night of {day:%A} {day.day} {day:%B %Y}"
    assert report["subject"] == steps.report_subject == subject
    body = report_file.read_text(encoding="utf-8")
    assert body == next(c["value"] for c in report["content"] if c["type"] == "text/html")
    #    It names both workspaces, each instance with what happened, each stop with its saving in USD:
    #    the hours until the next 08:00 on a working day at the price printed for its workspace.
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", body) == [home.name, away.name]
    assert "Needs attention" not in body  # nothing failed, no night was missed
    name, rows = attached_csv(report)
    assert name == f"auto-shutdown-{day:%Y-%m}-to-{day}.csv"
    stopped = {(w.name, i) for w, names in ((home, ("ci-bob", "ci-erin")),
                                            (away, ("ci-alice", "ci-bob", "ci-grace"))) for i in names}  # fmt: skip
    for workspace, outcomes in (
        (home, {"ci-alice": "kept all night by " + TEAM, "ci-dave": "busy with a job",
                "ci-frank": "opted out", "ci-carol": "not running"}),
        (away, {"ci-heidi": "not running"}),
    ):  # fmt: skip
        names = {i for w, i in stopped if w == workspace.name} | set(outcomes)
        shown = report_rows(body, workspace.name, names)
        assert set(shown) == names, shown
        for instance, (what, saving) in shown.items():
            if (workspace.name, instance) not in stopped:
                assert (what, saving) == (outcomes[instance], ""), (workspace.name, instance)
                continue
            (row,) = [r for r in rows if (r["workspace"], r["instance"]) == (workspace.name, instance)]
            stop = datetime.fromisoformat(row["stopped_at_utc"])
            assert what == f"stopped at {stop.astimezone(workspace.zone):%H:%M}"
            assert saving == f"{row['saving']} USD" and float(row["saving"]) > 0
            # every day is a shutdown day in the demo: work starts at the first 08:00 after the shutdown,
            # which the stop follows within minutes (the night's own date when it is after midnight)
            mornings = (datetime.combine(day + timedelta(days=n), dt_time(8), workspace.zone) for n in (0, 1))
            back = next(m.astimezone(UTC) for m in mornings if m > stop)
            hours = (back - stop).total_seconds() / 3600
            assert abs(float(row["hours"]) - hours) < 0.02, row
            assert float(row["saving"]) == pytest.approx(hours * steps.hourly[workspace.name], abs=0.011)
    #    The CSV: one row per instance and night of the month so far (tonight's, here), every workspace;
    #    its saving column sums to the mail's "<Month> so far".
    assert sorted((r["workspace"], r["instance"]) for r in rows) == sorted(
        [(home.name, i) for i in ("ci-alice", "ci-bob", "ci-carol", "ci-dave", "ci-erin", "ci-frank")]
        + [(away.name, i) for i in ("ci-alice", "ci-bob", "ci-grace", "ci-heidi")]
    )
    assert {r["night"] for r in rows} == {day.isoformat()} and {r["currency"] for r in rows} == {"USD"}
    assert {r["outcome"] for r in rows if (r["workspace"], r["instance"]) in stopped} == {"stopped"}
    month_so_far = re.search(rf"{day:%B} so far: <strong[^>]*>(\d+\.\d\d) USD</strong>", body).group(1)
    assert f"{sum(float(r['saving'] or 0) for r in rows):.2f}" == month_so_far
    text = next(c["value"] for c in report["content"] if c["type"] == "text/plain")
    assert f"{day:%B} so far: {month_so_far} USD" in text
    assert f"Estimated saving tonight: {month_so_far} USD (5 stops)" in text  # the month began tonight

    #    A call after both sweeps finds both nights done and the report sent: no third sweep, nothing
    #    stopped, no second report.
    mark = len(demo.lines)
    assert follow(demo, steps.curl) == 202
    time.sleep(POLL)
    assert app_lines(demo.lines[mark:]) == []
    assert len(reports(demo, FINOPS)) == 1
    logged = [line for line in demo.lines if line.startswith("[")]  # not the printed steps
    assert sum("ComputeShutdown for the night of" in line for line in logged) == 2
    assert sum("ComputeShutdown total over" in line for line in logged) == 2
    changed = {m.group(1) for m in re.finditer(r"AzureML stand-in: (\S+) ", demo.output)}
    assert changed == {
        f"{home.name}/ci-bob", f"{home.name}/ci-erin",
        f"{away.name}/ci-alice", f"{away.name}/ci-bob", f"{away.name}/ci-grace",
    }  # fmt: skip

    # The dev host never logs a link token, not even for the requests it served.
    token = link.split("token=")[1]
    assert "GET /api/CancelShutDown -> 200" in demo.output and token not in demo.output


def test_the_functions_their_urls_and_the_steps_are_printed(demo):
    out = demo.output
    assert re.search(r"MailSender: timerTrigger, next run \d{4}-", out)
    assert (
        f"CancelShutDown: [DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT] http://localhost:{demo.port}/api/CancelShutDown"
        in out
    )
    for step in ("The mail went out at start", "in a browser", "Wait until", "Read the summary lines",
                 "the morning-after report"):  # fmt: skip
        assert step in out
    assert "report_emails finops@contoso.com (currency USD and workday_start 08:00, their defaults)" in out
    assert "aml_workspaces (JSON form)" in out and re.search(r"App-wide: warning_minutes 60,", out)
    assert "mail_schedule" not in out and "shutdown_schedule" not in out


def test_the_sweep_ticks_printed_are_the_first_five_minute_ticks_at_or_after_each_shutdown(demo):
    steps = Steps.printed_by(demo.output)
    here = demo.machine_zone

    def tick(workspace: PrintedWorkspace) -> str:
        local = workspace.shutdown_at.astimezone(here)
        return f"{local.replace(minute=0) + timedelta(minutes=local.minute + (-local.minute) % 5):%H:%M}"

    home, away = demo.workspaces
    if tick(home) == tick(away):
        expected = f"the {tick(home)} tick sweeps both at once, unless you ran the call at {home.shutdown_at.astimezone(here):%H:%M}"
    else:
        expected = f"the {tick(home)} tick sweeps {home.name}, the {tick(away)} tick {away.name}"
    assert " ".join(steps.ticks.split()) == expected


@pytest.mark.parametrize(
    "home, shutdown, expected",
    [
        ("Etc/UTC", "2026-01-15T12:00:00+00:00", "America/New_York"),
        ("Etc/UTC", "2026-07-15T20:00:00+00:00", "America/New_York"),
        ("Etc/UTC", "2026-01-15T03:00:00+00:00", "Asia/Tokyo"),  # New York's date is still the 14th
        ("Europe/Berlin", "2026-01-15T19:00:00+00:00", "America/New_York"),
        ("Asia/Seoul", "2026-01-15T12:00:00+00:00", "America/New_York"),  # Tokyo's clock: New York it is
        ("Asia/Tokyo", "2026-01-15T01:00:00+00:00", "Australia/Sydney"),  # 10:00: New York's is the 14th
        ("America/New_York", "2026-01-15T12:00:00+00:00", "Asia/Tokyo"),  # 07:00, 21:00 in Tokyo
        ("America/New_York", "2026-01-16T01:00:00+00:00", "America/Los_Angeles"),  # 20:00: Tokyo's 16th
        ("America/Toronto", "2026-07-15T12:00:00+00:00", "Asia/Tokyo"),  # another name for New York's clock
        ("America/Los_Angeles", "2026-01-16T06:00:00+00:00", "Pacific/Honolulu"),  # 22:00
        # no zone of the demo's keeps another clock on Auckland's date at 00:30: the first that differs
        ("Pacific/Auckland", "2026-01-15T11:30:00+00:00", "America/New_York"),
    ],
)
def test_the_second_workspace_keeps_another_clock_on_the_same_date(home, shutdown, expected):
    at = datetime.fromisoformat(shutdown)
    assert away_zone_name(ZoneInfo(home), at) == expected


def test_unknown_functions_and_routes_are_404(demo):
    assert demo.run_timer("NoSuchFunction") == 404
    assert demo.request("GET", f"{demo.base}/api/NoSuchRoute")[0] == 404
    assert demo.request("POST", f"{demo.base}/admin/functions/CancelShutDown", b"{}")[0] == 400


@pytest.mark.parametrize(
    "now, lead, zone, expected",
    [
        ("2026-11-25T16:33:20+00:00", 180, "UTC", "2026-11-25T16:37:00+00:00"),  # next whole minute
        ("2026-11-25T16:34:00+00:00", 180, "UTC", "2026-11-25T16:37:00+00:00"),  # already whole: that one
        ("2026-11-25T23:58:30+00:00", 180, "Europe/Berlin", "2026-11-26T00:02:00+00:00"),  # 01:02 local
        # a spring-forward gap: 02:00 local does not exist; the app reads it as 03:00 CEST, so does the demo
        ("2026-03-29T00:58:30+00:00", 60, "Europe/Berlin", "2026-03-29T01:00:00+00:00"),
        # fall back, in the repeated hour: 02:13 means its first occurrence (past), so 03:00 CET it is
        ("2026-10-25T01:10:00+00:00", 180, "Europe/Berlin", "2026-10-25T02:00:00+00:00"),
    ],
)
def test_the_demo_shutdown_is_the_first_whole_local_minute_after_the_lead(now, lead, zone, expected):
    at = shutdown_instant(datetime.fromisoformat(now), lead, ZoneInfo(zone))
    assert at == datetime.fromisoformat(expected) and at.tzinfo is not None


@pytest.mark.parametrize("value", ["5", "3001", "twenty", "12.5"])
def test_shutdown_in_outside_its_range_is_refused_before_anything_starts(value, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "devhost", "--demo", "--shutdown-in", value, "--outbox", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "--shutdown-in: must be whole seconds from 10 to 3000" in run.stderr
    assert "Traceback" not in run.stderr and list(tmp_path.iterdir()) == []


def test_stopping_the_host_stops_everything_it_started(tmp_path):
    host = DevHost(tmp_path)
    azurite_port = int(re.search(r"Azurite at http://127\.0\.0\.1:(\d+)", host.output).group(1))
    assert host.stop() == 0
    assert "Stopping..." in host.output
    for port in (azurite_port, host.port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


class _SignalledHost(DevHost):
    """The demo dev host, plus a way to know that all its output has been read."""

    def __init__(self, outbox):
        self.drained = threading.Event()
        super().__init__(outbox)

    def _read(self) -> None:
        try:
            super()._read()
        finally:
            self.drained.set()


def _processes_serving(port: int) -> list[int]:
    """PIDs of Azurite processes started for this port (Linux /proc; empty elsewhere)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--tablePort" in args and str(port).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


# make forwards a SIGTERM (or the terminal's Ctrl-C reaches both make and the host), so the host may
# be told to stop twice, at once or while it cleans up: the second signal must change nothing.
@pytest.mark.parametrize(
    "first, second, gap",
    [
        (signal.SIGTERM, signal.SIGTERM, 0.0),
        (signal.SIGTERM, signal.SIGINT, 0.0),
        (signal.SIGINT, signal.SIGTERM, 0.2),
    ],
    ids=["TERM+TERM", "TERM+INT", "INT+TERM-during-cleanup"],
)
def test_a_second_stop_signal_is_ignored_quietly(tmp_path, first, second, gap):
    host = _SignalledHost(tmp_path)
    azurite_port = int(re.search(r"Azurite at http://127\.0\.0\.1:(\d+)", host.output).group(1))
    try:
        host.process.send_signal(first)
        if gap:
            host.wait_for_line("Stopping...", timeout=10)
            time.sleep(gap)
        host.process.send_signal(second)
        started = time.monotonic()
        assert host.stop() == 0, host.output
        assert time.monotonic() - started < 20
        assert host.drained.wait(10)
        assert "Stopping..." in host.output and "Traceback" not in host.output, host.output
        for port in (azurite_port, host.port):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
        assert _processes_serving(azurite_port) == []
    finally:
        host.stop()
        for pid in _processes_serving(azurite_port):  # a left-over Azurite of this test: don't leak it
            os.kill(pid, signal.SIGKILL)
