"""The self-contained demo: Azurite, the AzureML and SendGrid stand-ins from the wire tests, and App
Settings pointing the unchanged app at them. Only endpoints differ from Azure; the code path is the same.

The app keeps its own calendar: both timers tick every five minutes and ask it what is due. So that
nobody waits for a real evening, the demo's shutdown is a few minutes after start (`shutdown_time`, in
this machine's zone) and its warning window (`warning_minutes`) is already open. The next five-minute
tick may be up to five minutes away, so the demo runs one MailSender tick itself as soon as the host
is up, the way the admin route runs one: the mail is in the outbox before the steps are printed.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from loopback import Azurite, StandIns
from shared import setting_rules
from shared.rendering import format_local, relative_day
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
TEAM = "ml-team@contoso.com"
RESOURCE_GROUP = "rg-demo"
# The shutdown is the first whole minute at least this far ahead: three minutes to open the mail and
# click, and a time a person can type (shutdown_time is HH:MM).
SHUTDOWN_LEAD = 180
WARNING_MINUTES = 60  # the mail window [shutdown - 60 min, shutdown) is open from the start
LEAD_RANGE = (10, 3000)  # seconds; beyond 50 minutes the mail window would not be open yet at start
EXPECTED_SUMMARY = (
    "stopped 2, kept by request 1, busy with a job 1, not running 1, opted out 1, "
    "restarted after tonight's stop 0, delayed 0, failed 0"
)


class Demo:
    def __init__(self, port: int, outbox: Path, shutdown_in: int = SHUTDOWN_LEAD):
        self.port, self.outbox, self.shutdown_in = port, outbox, shutdown_in
        self.azurite = Azurite()
        self.standins = StandIns(
            azureml={"workspace": "ws-demo", "resource_group": RESOURCE_GROUP},
            sendgrid={"outbox_dir": outbox},
        )
        self.zone = ZoneInfo(_local_zone_name())
        self.shutdown_at = shutdown_instant(datetime.now(UTC), shutdown_in, self.zone)
        self.mail: Path | None = None  # the team's mail, once the first tick has sent it
        self.mailed_at = datetime.now(UTC)
        self.narrator: _Narrator | None = None

    def start(self) -> dict[str, str]:
        """Start everything; return the App Settings (and proxy variables) the app should run with."""
        for old in self.outbox.glob("*.*"):
            old.unlink()
        try:
            self.azurite.start()
            self.standins.start()
            for name, state, creator, tags in DEMO_INSTANCES:
                self.standins.azureml.seed(name, state, created_by=creator, tags=tags)
            self.narrator = _Narrator(self.standins, self.outbox)
            self.narrator.start()
        except BaseException:
            self.stop()
            raise
        # Settled once everything is up, so that starting slowly never eats into the time to click.
        self.shutdown_at = shutdown_instant(datetime.now(UTC), self.shutdown_in, self.zone)
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

    def _settings(self) -> dict[str, str]:
        local = self.shutdown_at.astimezone(self.zone)
        return {
            **self.standins.app_settings(),
            "AzureWebJobsStorage": self.azurite.connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "aml_compute_instance": "*",
            "func_cancel_shutdown": f"http://localhost:{self.port}/api/CancelShutDown",
            "from_email": "Azure ML auto-shutdown <noreply@contoso.com>",
            "to_emails": TEAM,
            "subject": "Azure ML compute instances stop tonight",
            "cancel_link_secret": secrets.token_urlsafe(48),
            "time_zone": self.zone.key,
            "shutdown_time": f"{local:%H:%M}",
            "warning_minutes": str(WARNING_MINUTES),
            "notify_instance_owner": "true",
        }

    def steps(self, timers: TimerScheduler) -> str:
        base = f"http://localhost:{self.port}"
        admin = f"curl -X POST {base}/admin/functions/{{}} -H 'Content-Type: application/json' -d '{{{{}}}}'"
        instances = ", ".join(
            f"{name} ({state}{''.join(f', tag {k}={v}' for k, v in tags.items())})"
            for name, state, _, tags in DEMO_INSTANCES
        )
        local = self.shutdown_at.astimezone(self.zone)
        at = f"{local:%H:%M}"
        tick = timers.run_at_or_after("ComputeShutdown", self.shutdown_at).astimezone(self.zone)
        when = relative_day(self.shutdown_at, self.mailed_at, self.zone)
        if self.mail:
            mail_step = f"""The mail went out at start (the demo ran one MailSender tick itself rather than wait
     for the next five-minute one). Open it in a browser:
       {self.mail.resolve()}"""
        else:
            mail_step = f"""The mail did not go out at start (see the error above). Send it before {at}:
       {admin.format("MailSender")}
     then open {self.outbox.resolve()}/*-{TEAM}.html in a browser."""
        return f"""
Azure ML auto-shutdown - local demo (no Azure account needed)
  Workspace ws-demo, resource group {RESOURCE_GROUP} (AzureML stand-in): {instances}
  Table Storage: Azurite at {self.azurite.table_endpoint}; SendGrid stand-in writes mails to {self.outbox.resolve()}/
  Calendar: time_zone {self.zone.key}, shutdown_time {at}, warning_minutes {WARNING_MINUTES}, catch_up_minutes 120.
    Both timers tick every five minutes (:00, :05, ...) and ask the calendar what is due.
  Shutdown: {format_local(self.shutdown_at, self.zone)} ({self.shutdown_at.isoformat()})

Try it:
  1. {mail_step}
  2. Before {at}, click "Keep ci-alice running {when}". On the page that opens, press
     "Keep ci-alice running {when}" (or "Stop it at ... instead", one or two hours later: the page
     offers both; the link itself changes nothing, only a button does; the links expire at the shutdown).
  3. Wait until {at}, the shutdown time: the sweep runs by itself at the {tick:%H:%M} tick. Or, from {at} on, run it now:
       {admin.format("ComputeShutdown")}
     (Before {at} that call is a tick like any other and does nothing; once the night is swept, it finds it done.)
  4. Read the summary line in the console:
       ComputeShutdown for the night of {local.date()}: {EXPECTED_SUMMARY}
     ci-alice kept, ci-bob and ci-erin stopped, ci-dave busy with a job, ci-carol not running,
     ci-frank opted out (tagged auto-shutdown=off: it is never mailed about or stopped).

Ctrl-C stops everything (dev host, stand-ins, Azurite).
"""


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
    each change of an instance's state in the AzureML stand-in. It polls: the stand-ins have no hooks."""

    POLL = 0.2

    def __init__(self, standins: StandIns, outbox: Path):
        self.azureml, self.outbox = standins.azureml, outbox
        self.states = self.azureml.instances()
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

    def tell(self) -> None:
        with self._lock:
            for mail in sorted(set(self.outbox.glob("*.html")) - self.mails):
                self.mails.add(mail)
                recipient = mail.stem.split("-", 2)[-1]
                log.info("SendGrid stand-in accepted a mail to %s: %s", recipient, mail.name)
            states = self.azureml.instances()
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
