"""The self-contained demo: Azurite, the AzureML and SendGrid stand-ins from the wire tests, and App
Settings pointing the unchanged app at them. Only endpoints differ from Azure; the code path is the same.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from loopback import Azurite, StandIns
from shared import setting_rules

from .timers import schedule_zone

# (name, state, creator): some running, one stopped, one busy with a job; owners have addresses.
DEMO_INSTANCES = [
    ("ci-alice", "Running", "alice@contoso.com"),
    ("ci-bob", "Running", "bob@contoso.com"),
    ("ci-carol", "Stopped", "carol@contoso.com"),
    ("ci-dave", "JobRunning", "dave@contoso.com"),
    ("ci-erin", "Running", "erin@contoso.com"),
]
TEAM = "ml-team@contoso.com"


class Demo:
    def __init__(self, port: int, outbox: Path):
        self.port, self.outbox = port, outbox
        self.azurite = Azurite()
        self.standins = StandIns(azureml={"workspace": "ws-demo"}, sendgrid={"outbox_dir": outbox})
        self.mail_at, self.shutdown_at = _daily_times()

    def start(self) -> dict[str, str]:
        """Start everything; return the App Settings (and proxy variables) the app should run with."""
        for old in self.outbox.glob("*.*"):
            old.unlink()
        try:
            self.azurite.start()
            self.standins.start()
        except BaseException:
            self.stop()
            raise
        for name, state, creator in DEMO_INSTANCES:
            self.standins.azureml.seed(name, state, created_by=creator)
        return {**self.standins.env, **self._settings()}

    def stop(self) -> None:
        self.standins.stop()
        self.azurite.cleanup()

    def _settings(self) -> dict[str, str]:
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
            "time_zone": _local_zone_name(),
            "mail_schedule": _ncrontab(self.mail_at),
            "shutdown_schedule": _ncrontab(self.shutdown_at),
            "notify_instance_owner": "true",
        }

    def steps(self) -> str:
        base = f"http://localhost:{self.port}"
        admin = f"curl -X POST {base}/admin/functions/{{}} -H 'Content-Type: application/json' -d '{{{{}}}}'"
        instances = ", ".join(f"{n} ({s})" for n, s, _ in DEMO_INSTANCES)
        return f"""
Azure ML auto-shutdown - local demo (no Azure account needed)
  Workspace ws-demo (AzureML stand-in): {instances}
  Table Storage: Azurite at {self.azurite.table_endpoint}; SendGrid stand-in writes mails to {self.outbox}/
  Timers also fire by themselves, daily: MailSender at {self.mail_at:%H:%M %Z}, ComputeShutdown at {self.shutdown_at:%H:%M %Z}.

Try it:
  1. Send tonight's mails now:
       {admin.format("MailSender")}
  2. Open a mail in a browser, e.g. {self.outbox.resolve()}/*-{TEAM}.html
  3. Click "Keep ci-alice running tonight", then press the button on the page that opens
     (the link itself changes nothing: only the button does).
  4. Run tonight's shutdown now:
       {admin.format("ComputeShutdown")}
  5. Read the summary line below: ci-alice kept, ci-bob and ci-erin stopped, ci-dave busy, ci-carol not running.

Ctrl-C stops everything (dev host, stand-ins, Azurite).
"""


def _daily_times() -> tuple[datetime, datetime]:
    """Mail in 30 minutes, shutdown in an hour: the links of a mail sent now are for that shutdown.

    In the zone the host reads schedules in (TZ, else UTC), so the NCRONTAB hours come out right.
    """
    now = datetime.now(schedule_zone()).replace(second=0, microsecond=0)
    return now + timedelta(minutes=30), now + timedelta(minutes=60)


def _ncrontab(at: datetime) -> str:
    return f"0 {at.minute} {at.hour} * * *"


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
