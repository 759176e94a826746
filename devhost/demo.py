"""The self-contained demo: Azurite, the AzureML and SendGrid stand-ins from the wire tests, and App
Settings pointing the unchanged app at them. Only endpoints differ from Azure; the code path is the same.

One deployment serves two workspaces through `aml_workspaces` (JSON form), each with its own calendar:
ws-demo in this machine's zone, and a second one in another zone (New York, or Tokyo when this machine
keeps New York's time) whose shutdown, in its own local time, comes a minute after ws-demo's. So a
person trying the demo sees one mail per recipient grouped by workspace, then each workspace stopping
at its own time, with its own summary line.

The app keeps its own calendar: both timers tick every five minutes and ask it what is due. So that
nobody waits for a real evening, the demo's shutdowns are a few minutes after start (`shutdown_time`
of each entry) and their warning windows (`warning_minutes`) are already open. The next five-minute
tick may be up to five minutes away, so the demo runs one MailSender tick itself as soon as the host
is up, the way the admin route runs one: the mail is in the outbox before the steps are printed.

With `report_emails` set, the tick that sweeps the second workspace also mails the morning-after report
of the night: every instance is a Standard_DS3_v2 whose Linux list price the Retail Prices stand-in
serves for its workspace's region, so the report shows money. The report covers one local date, so the
second workspace's zone is one whose date at its shutdown is ws-demo's (see away_zone_name).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from loopback import Azurite, StandIns
from shared import setting_rules
from shared.rendering import format_local, relative_day
from shared.settings import SINGLE_WORKSPACE
from shared.shutdown_calendar import local_instant

from . import invoke
from .functions import Function
from .timers import TimerScheduler

log = logging.getLogger("Demo")

# (name, state, creator, tags): some running, one stopped, one busy with a job, one opted out with the
# opt-out tag; owners have addresses.
DEMO_INSTANCES = [
    ("ci-alice", "Running", "alice@contoso.com", {}),
    ("ci-bob", "Running", "bob@contoso.com", {}),
    ("ci-carol", "Stopped", "carol@contoso.com", {}),
    ("ci-dave", "JobRunning", "dave@contoso.com", {}),
    ("ci-erin", "Running", "erin@contoso.com", {}),
    ("ci-frank", "Running", "frank@contoso.com", {"auto-shutdown": "off"}),
]
# The second workspace: ci-alice and ci-bob again (the same people, another workspace: a keep in one
# never keeps the other), one instance of its own and one stopped.
AWAY_INSTANCES = [
    ("ci-alice", "Running", "alice@contoso.com", {}),
    ("ci-bob", "Running", "bob@contoso.com", {}),
    ("ci-grace", "Running", "grace@contoso.com", {}),
    ("ci-heidi", "Stopped", "heidi@contoso.com", {}),
]
TEAM = "ml-team@contoso.com"
REPORT_TO = "finops@contoso.com"  # report_emails: the morning-after report goes here
RESOURCE_GROUP = "rg-demo"
# Every demo instance runs on the AzureML stand-in's default size (vmSize, Azure ML's spelling).
VM_SIZE = "STANDARD_DS3_V2"


@dataclass(frozen=True)
class DemoWorkspace:
    name: str
    resource_group: str
    region: str
    instances: list[tuple[str, str, str, dict[str, str]]]
    # The Linux pay-as-you-go price (USD per hour) the Retail Prices stand-in serves for VM_SIZE in
    # `region`: illustrative, of the right order, not a quote (westeurope and eastus are the stand-in's
    # default catalogue's figures; the demo seeds every one, so each region has a price).
    hourly: float


HOME = DemoWorkspace("ws-demo", RESOURCE_GROUP, "westeurope", DEMO_INSTANCES, 0.293)
# The second workspace's zone: the first of these whose clock differs from this machine's and whose
# date at the shutdown is this machine's (see away_zone_name).
AWAY = {
    "America/New_York": DemoWorkspace("ws-demo-ny", "rg-demo-ny", "eastus", AWAY_INSTANCES, 0.229),
    "Asia/Tokyo": DemoWorkspace("ws-demo-tokyo", "rg-demo-tokyo", "japaneast", AWAY_INSTANCES, 0.321),
    "America/Los_Angeles": DemoWorkspace("ws-demo-la", "rg-demo-la", "westus2", AWAY_INSTANCES, 0.229),
    "Australia/Sydney": DemoWorkspace("ws-demo-sydney", "rg-demo-sydney", "australiaeast", AWAY_INSTANCES, 0.339),
    "Pacific/Honolulu": DemoWorkspace("ws-demo-honolulu", "rg-demo-honolulu", "westus", AWAY_INSTANCES, 0.257),
}  # fmt: skip
# ws-demo's shutdown is the first whole minute at least this far ahead: three minutes to open the mail
# and click, and a time a person can type (shutdown_time is HH:MM).
SHUTDOWN_LEAD = 180
AWAY_GAP = 60  # seconds: the second workspace shuts down at the first whole minute after ws-demo's
WARNING_MINUTES = 60  # the mail windows [shutdown - 60 min, shutdown) are open from the start
LEAD_RANGE = (10, 3000)  # seconds; beyond 50 minutes the mail window would not be open yet at start
COUNTS = (
    "stopped", "kept by request", "busy with a job", "not running", "opted out",
    "restarted after tonight's stop", "delayed", "late notice", "failed",
)  # fmt: skip
# What each workspace's sweep finds once ci-alice is kept in ws-demo (and nowhere else).
HOME_COUNTS = {"stopped": 2, "kept by request": 1, "busy with a job": 1, "not running": 1, "opted out": 1}
AWAY_COUNTS = {"stopped": 3, "not running": 1}


def listing(*counts: dict[str, int]) -> str:
    """The counts of a summary line (or, summed, of a total line), as the app writes them."""
    return ", ".join(f"{name} {sum(c.get(name, 0) for c in counts)}" for name in COUNTS)


class Demo:
    def __init__(self, port: int, outbox: Path, shutdown_in: int = SHUTDOWN_LEAD):
        self.port, self.outbox, self.shutdown_in = port, outbox, shutdown_in
        self.azurite = Azurite()
        self.standins = StandIns(
            azureml={"workspace": HOME.name, "resource_group": HOME.resource_group, "region": HOME.region},
            sendgrid={"outbox_dir": outbox},
        )
        self.zone = ZoneInfo(_local_zone_name())
        self._settle()
        self.mail: Path | None = None  # the team's mail, once the first tick has sent it
        self.mailed_at = datetime.now(UTC)
        self.narrator: _Narrator | None = None

    def _settle(self) -> None:
        self.shutdown_at = shutdown_instant(datetime.now(UTC), self.shutdown_in, self.zone)
        self.away_zone = ZoneInfo(away_zone_name(self.zone, self.shutdown_at))
        self.away = AWAY[self.away_zone.key]
        self.away_at = shutdown_instant(self.shutdown_at, AWAY_GAP, self.away_zone)

    @property
    def same_date(self) -> bool:
        """Whether both nights fall on one local date, so one report covers both (see away_zone_name)."""
        return self.shutdown_at.astimezone(self.zone).date() == self.away_at.astimezone(self.away_zone).date()

    def start(self) -> dict[str, str]:
        """Start everything; return the App Settings (and proxy variables) the app should run with."""
        for old in self.outbox.glob("*.*"):
            old.unlink()
        try:
            self.azurite.start()
            self.standins.start()
            # Settled once everything is up, so that starting slowly never eats into the time to click;
            # before the second workspace is added, since its zone (and so its name) depends on the date.
            self._settle()
            aml = self.standins.azureml
            away = aml.add_workspace(
                aml.subscription_id, self.away.resource_group, self.away.name, self.away.region
            )
            for workspace, spec in ((aml.default_workspace, HOME), (away, self.away)):
                self.standins.prices.seed_price(spec.region, VM_SIZE, spec.hourly)  # USD, Linux
                for name, state, creator, tags in spec.instances:
                    workspace.seed(name, state, created_by=creator, tags=tags, vm_size=VM_SIZE)
            self.narrator = _Narrator(self.standins, self.outbox)
            self.narrator.start()
        except BaseException:
            self.stop()
            raise
        return {**self.standins.env, **self._settings()}

    def stop(self) -> None:
        if self.narrator:
            self.narrator.stop()
        self.standins.stop()
        self.azurite.cleanup()

    def send_mail_now(self, functions: list[Function]) -> None:
        """Run one MailSender tick now, as `POST /admin/functions/MailSender` would: the heartbeat's
        next tick may be five minutes away. Call it before the timers start, so none races it."""
        mail_sender = next(f for f in functions if f.name == "MailSender")
        self.mailed_at = datetime.now(UTC)
        invoke.run_timer(mail_sender, "Demo start: the mail goes out now, not at the next five-minute tick")
        if self.narrator:
            self.narrator.tell()  # the mail lines come before the steps that point at them
        self.mail = next(iter(sorted(self.outbox.glob(f"*-{TEAM}.html"))), None)

    def workspace_entries(self) -> list[dict[str, str]]:
        """`aml_workspaces` in its JSON form: each workspace with its own time zone and shutdown time."""
        subscription = self.standins.azureml.subscription_id
        return [
            {
                "subscription_id": subscription,
                "resource_group": spec.resource_group,
                "workspace": spec.name,
                "time_zone": zone.key,
                "shutdown_time": f"{at.astimezone(zone):%H:%M}",
            }
            for spec, zone, at in self._calendars()
        ]

    def _calendars(self) -> list[tuple[DemoWorkspace, ZoneInfo, datetime]]:
        return [(HOME, self.zone, self.shutdown_at), (self.away, self.away_zone, self.away_at)]

    def _settings(self) -> dict[str, str]:
        # The stand-ins' credentials and SendGrid key, but aml_workspaces instead of the one workspace.
        stand_ins = {k: v for k, v in self.standins.app_settings().items() if k not in SINGLE_WORKSPACE}
        return {
            **stand_ins,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "aml_workspaces": json.dumps(self.workspace_entries()),  # one line, as in App Settings
            "func_cancel_shutdown": f"http://localhost:{self.port}/api/CancelShutDown",
            "from_email": "Azure ML auto-shutdown <noreply@contoso.com>",
            "to_emails": TEAM,
            "subject": "Azure ML compute instances stop tonight",
            "cancel_link_secret": secrets.token_urlsafe(48),
            "warning_minutes": str(WARNING_MINUTES),
            # The demo's mail goes out minutes before its shutdown; a deployment keeps the default 30.
            "minimum_notice_minutes": "0",
            "notify_instance_owner": "true",
            "report_emails": REPORT_TO,  # currency USD and workday_start 08:00: their defaults
        }

    def steps(self, timers: TimerScheduler) -> str:
        base = f"http://localhost:{self.port}"
        admin = f"curl -X POST {base}/admin/functions/{{}} -H 'Content-Type: application/json' -d '{{{{}}}}'"
        sub = self.standins.azureml.subscription_id
        home, away = HOME.name, self.away.name
        at = f"{self.shutdown_at.astimezone(self.zone):%H:%M}"  # both times on this machine's clock
        away_here = f"{self.away_at.astimezone(self.zone):%H:%M}"
        away_there = f"{self.away_at.astimezone(self.away_zone):%H:%M} in {self.away_zone.key}"
        tick = timers.run_at_or_after("ComputeShutdown", self.shutdown_at).astimezone(self.zone)
        away_tick = timers.run_at_or_after("ComputeShutdown", self.away_at).astimezone(self.zone)
        when = relative_day(self.shutdown_at, self.mailed_at, self.zone)
        home_line = self._summary(HOME, self.zone, self.shutdown_at, sub, HOME_COUNTS)
        both = listing(HOME_COUNTS, AWAY_COUNTS)
        setting = "    [" + ",\n     ".join(json.dumps(entry) for entry in self.workspace_entries()) + "]"
        away_line = self._summary(self.away, self.away_zone, self.away_at, sub, AWAY_COUNTS)
        workspaces = "\n".join(
            f"""  Workspace {spec.name}, resource group {spec.resource_group} (AzureML stand-in): {_instances(spec)}
    Shutdown: {format_local(at_, zone)} ({at_.isoformat()})"""
            for spec, zone, at_ in self._calendars()
        )
        if self.mail:
            mail_step = f"""The mail went out at start (the demo ran one MailSender tick itself rather than wait
     for the next five-minute one): one mail per recipient, its instances grouped by workspace, each
     group with its workspace's shutdown time (alice's covers her ci-alice in both). Open the team's,
     which covers both workspaces, in a browser:
       {self.mail.resolve()}"""
        else:
            mail_step = f"""The mail did not go out at start (see the error above). Send it before {at}:
       {admin.format("MailSender")}
     then open {self.outbox.resolve()}/*-{TEAM}.html in a browser."""
        if tick == away_tick:
            by_itself = f"the {tick:%H:%M} tick sweeps both at once, unless you ran the call at {at}"
        else:
            by_itself = f"the {tick:%H:%M} tick sweeps {home}, the {away_tick:%H:%M} tick {away}"
        report_step = self._report_step(at, away_here)
        return f"""
Azure ML auto-shutdown - local demo (no Azure account needed)
  One deployment, two workspaces: aml_workspaces (JSON form) gives each its own time zone and shutdown time:
{setting}
  App-wide: warning_minutes {WARNING_MINUTES}, catch_up_minutes 120, to_emails {TEAM}, notify_instance_owner true,
    report_emails {REPORT_TO} (currency USD and workday_start 08:00, their defaults).
    Both timers tick every five minutes (:00, :05, ...) and ask each workspace's calendar what is due.
{workspaces}
  Table Storage: Azurite at {self.azurite.table_endpoint}; SendGrid stand-in writes mails to {self.outbox.resolve()}/
  Retail Prices stand-in (prices.azure.com): every instance is a {VM_SIZE}, listed at {HOME.hourly} USD/h in
    {HOME.region} ({home}) and {self.away.hourly} USD/h in {self.away.region} ({away}), Linux pay-as-you-go.

Try it (times on this machine's clock, {self.zone.key}):
  1. {mail_step}
  2. Before {at}, under {home}, click "Keep ci-alice in {home} running {when}". On the page that opens, press
     "Keep ci-alice running {when}" (or "Stop it at ... instead", one or two hours later: the page
     offers both; the link itself changes nothing, only a button does; the links expire at the shutdown).
     Leave ci-alice under {away} alone: a keep is for one instance in one workspace.
  3. Wait until {at}, {home}'s shutdown time, and run the sweep:
       {admin.format("ComputeShutdown")}
     It sweeps {home} only. Wait until {away_here}, {away}'s shutdown time ({away_there}),
     and run it again: it sweeps {away}. Before a workspace's shutdown time the call does nothing for
     it (try it now); once its night is swept, it finds it done. Or let the five-minute ticks do it:
     {by_itself}.
  4. Read the summary lines in the console (each ends with the night's estimated saving,
     `, saving ... USD`). At {at}, {home}'s, then the total of that tick:
       ComputeShutdown for the night of {home_line}
       ComputeShutdown total over 1 workspace(s): {listing(HOME_COUNTS)}
     ci-alice kept, ci-bob and ci-erin stopped, ci-dave busy with a job, ci-carol not running,
     ci-frank opted out (tagged auto-shutdown=off: it is never mailed about or stopped).
     At {away_here}, {away}'s, then the total of that tick:
       ComputeShutdown for the night of {away_line}
       ComputeShutdown total over 1 workspace(s): {listing(AWAY_COUNTS)}
     ci-alice, ci-bob and ci-grace stopped (the keep was for ci-alice in {home} only), ci-heidi not
     running. A total counts the workspaces that tick swept (or failed): {home}'s night, swept
     already, is not counted again. A tick that sweeps both logs both lines, then: total over 2
     workspace(s): {both}
  5. {report_step}

Ctrl-C stops everything (dev host, stand-ins, Azurite).
"""

    def _report_step(self, at: str, away_here: str) -> str:
        """Step 5: the morning-after report, which the tick that sweeps the second workspace sends."""
        home, away = HOME.name, self.away.name
        day = self.shutdown_at.astimezone(self.zone).date()
        before = day.replace(day=1) - timedelta(days=1)
        outbox = self.outbox.resolve()
        if not self.same_date:  # see away_zone_name: only just before or after midnight on the date line
            away_day = self.away_at.astimezone(self.away_zone).date()
            return f"""The morning-after report (report_emails {REPORT_TO}) covers one date's nights and goes
     out after that date's last sweep. Here the two nights fall on two dates ({day} here, {away_day}
     in {self.away_zone.key}): each date's report waits until the other workspace's night of that date
     has been swept or its window has closed, hours from now. Start the demo at another time of day to
     see it right after the second sweep, in {outbox}/*-{REPORT_TO}.html."""
        return f"""Right after {away}'s sweep (at {away_here}: both nights of {day} are swept now), the same
     tick mails the morning-after report to {REPORT_TO} (report_emails), once: later calls and
     ticks find it sent. The console names its file, {outbox}/<time>-<n>-{REPORT_TO}.html;
     open it in a browser. Subject "Auto-shutdown report for the night of {day:%A} {day.day} {day:%B %Y}".
     At the top, what needs attention (nothing, tonight); then tonight's estimated saving, {day:%B} so
     far and {before:%B}; then per workspace each instance and what happened: in {home}, ci-alice kept
     all night by the address whose link you used, ci-bob and ci-erin stopped at {at}, each with its
     saving (the hours until workday_start, 08:00 on the next working day in its workspace's zone, times
     {HOME.hourly} USD/h), ci-dave busy with a job, ci-frank opted out, ci-carol not running; in {away},
     ci-alice, ci-bob and ci-grace stopped ({self.away.hourly} USD/h), ci-heidi not running. The .json beside it
     is the mail as SendGrid took it: its "attachments" hold the CSV (auto-shutdown-{day:%Y-%m}-to-{day}.csv,
     base64 in "content"), one row per instance and night of {day:%B} so far; its saving column sums
     to "{day:%B} so far". Chose "Stop it at ... instead"? Then the report waits for that stop and
     shows ci-alice stopped at that time, with the hours from then."""

    @staticmethod
    def _summary(spec: DemoWorkspace, zone: ZoneInfo, at: datetime, subscription: str, counts) -> str:
        """A workspace's summary line after 'ComputeShutdown for the night of ': its local date and label."""
        label = f"{subscription}/{spec.resource_group}/{spec.name}"
        return f"{at.astimezone(zone).date()} in workspace {label}: {listing(counts)}"


def away_zone_name(home: ZoneInfo, shutdown_at: datetime) -> str:
    """The second workspace's zone, for ws-demo's shutdown at `shutdown_at`: the first of AWAY whose clock
    differs from this machine's zone's (at the shutdown, and an hour later: a daylight-saving change in
    between must not make them meet) and whose local date at its own shutdown, a minute later, is ws-demo's.

    The report covers one local date (the night of 24 November is Tokyo's, Berlin's and New York's 24
    November) and goes out after that date's last sweep: with both nights on one date, it goes out right
    after the second workspace's sweep. New York is 5 hours behind UTC, so after midnight UTC its date is
    still yesterday; then Tokyo; on New York's clock, Los Angeles; on Tokyo's in the morning, Sydney; late
    in the evening on Los Angeles' clock, Honolulu. Only where no zone of AWAY keeps another clock on the
    same date (in the first hour or two after midnight in Sydney or Auckland, in the last two before it in
    Honolulu) is it the first whose clock differs; then each date's report waits for the other date's
    sweep window to close (see Demo.same_date)."""
    instants = (shutdown_at, shutdown_at + timedelta(hours=1))
    differ = [
        name
        for name in AWAY
        if all(
            at.astimezone(ZoneInfo(name)).utcoffset() != at.astimezone(home).utcoffset() for at in instants
        )
    ]
    day = shutdown_at.astimezone(home).date()
    for name in differ:
        zone = ZoneInfo(name)
        if shutdown_instant(shutdown_at, AWAY_GAP, zone).astimezone(zone).date() == day:
            return name
    return differ[0]  # New York and Tokyo never keep the same time


def _instances(spec: DemoWorkspace) -> str:
    return ", ".join(
        f"{name} ({state}{''.join(f', tag {k}={v}' for k, v in tags.items())})"
        for name, state, _, tags in spec.instances
    )


def shutdown_instant(now: datetime, lead_seconds: float, zone: ZoneInfo) -> datetime:
    """The UTC instant of the first whole local minute at least `lead_seconds` after `now`, as the app
    reads it back from shutdown_time (HH:MM) on that local date: a time in a spring-forward gap means
    the end of the gap; a time that occurs twice means its first occurrence, so in the repeated hour
    of a fall-back night the first minute that works is the one after it."""
    earliest = now + timedelta(seconds=lead_seconds)
    wall = earliest.astimezone(zone).replace(tzinfo=None, fold=0)  # shutdown_time is a plain HH:MM
    minute = wall.replace(second=0, microsecond=0)
    if minute < wall:
        minute += timedelta(minutes=1)
    while (at := local_instant(minute.date(), minute.time(), zone)) < earliest:
        minute += timedelta(minutes=1)
    return at


def lead_seconds(text: str) -> int:
    """--shutdown-in: whole seconds within LEAD_RANGE."""
    low, high = LEAD_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (low <= value <= high) or value != int(value):
        raise ValueError(
            f"must be whole seconds from {low} to {high} (the mail window, warning_minutes {WARNING_MINUTES}, "
            f"must be open at start), not {text!r}"
        )
    return int(value)


class _Narrator:
    """Tells the console what the stand-ins did: each mail SendGrid accepted (its file in the outbox) and
    each change of an instance's state in the AzureML stand-in, named `workspace/instance` (both
    workspaces have a ci-alice). It polls: the stand-ins have no hooks."""

    POLL = 0.2

    def __init__(self, standins: StandIns, outbox: Path):
        self.azureml, self.outbox = standins.azureml, outbox
        self.states = self._states()
        self.mails: set[Path] = set(outbox.glob("*.html"))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-narrator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL):
            self.tell()

    def _states(self) -> dict[str, str]:
        return {
            f"{workspace.name}/{name}": state
            for workspace in self.azureml.workspaces()
            for name, state in workspace.instances().items()
        }

    def tell(self) -> None:
        with self._lock:
            for mail in sorted(set(self.outbox.glob("*.html")) - self.mails):
                self.mails.add(mail)
                recipient = mail.stem.split("-", 2)[-1]
                log.info("SendGrid stand-in accepted a mail to %s: %s", recipient, mail.name)
            states = self._states()
            for name, state in states.items():
                if self.states.get(name) != state:
                    log.info("AzureML stand-in: %s %s -> %s", name, self.states.get(name), state)
            self.states = states


def _local_zone_name() -> str:
    """This machine's zone, so the demo mail shows times the way a local reader expects."""
    for candidate in (os.environ.get("TZ", "").strip(), _read("/etc/timezone").strip()):
        try:
            if candidate:
                return setting_rules.time_zone(candidate).key
        except ValueError:
            continue
    return "UTC"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""
