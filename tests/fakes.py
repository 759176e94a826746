"""In-memory fakes of the three ports (shared/ports.py). Each records what happened, for assertions."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import date

from shared.domain import Cancellation, Instance, OutgoingMail

TEST_SECRET = "test-secret-" + "x" * 40

VALID_ENVIRON = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "tenant_id": "11111111-2222-3333-4444-555555555555",
    "subscription_id": "00000000-1111-2222-3333-444444444444",
    "service_principal_id": "66666666-7777-8888-9999-000000000000",
    "service_principal_password": "sp-password-not-for-logs",
    "resource_group": "ml-rg",
    "aml_workspace": "ml-ws",
    "aml_compute_instance": "*",
    "SENDGRID_API_KEY": "SG.test-key-not-for-logs",
    "func_cancel_shutdown": "https://autoshutdown.example.net/api/CancelShutDown?code=function-key-not-for-logs",
    "from_email": "Auto-shutdown <noreply@contoso.com>",
    "to_emails": "ml-team@contoso.com",
    "subject": "Compute instances stop tonight",
    "cancel_link_secret": TEST_SECRET,
    "time_zone": "Europe/Berlin",
    "mail_schedule": "0 0 16 * * *",
    "shutdown_schedule": "0 0 19 * * *",  # 20:00 in Berlin in winter
}


def environ(**overrides: str | None) -> dict[str, str]:
    """VALID_ENVIRON with some settings changed; None removes a setting."""
    values = {**VALID_ENVIRON, **overrides}
    return {k: v for k, v in values.items() if v is not None}


class FakeWorkspace:
    def __init__(self, *instances: Instance):
        self.instances = {i.name: i for i in instances}
        self.list_calls = 0
        self.stop_calls: list[str] = []
        self.list_errors: list[Exception] = []  # raised by the next list_instances calls, in order
        self.stop_errors: dict[str, list[Exception]] = defaultdict(list)  # per name, in order
        self._lock = threading.Lock()

    def list_instances(self) -> list[Instance]:
        self.list_calls += 1
        if self.list_errors:
            raise self.list_errors.pop(0)
        return list(self.instances.values())

    def stop(self, name: str) -> bool:
        with self._lock:
            self.stop_calls.append(name)
            if self.stop_errors[name]:
                raise self.stop_errors[name].pop(0)
            instance = self.instances[name]
            if instance.state not in ("Running", "JobRunning"):
                return False
            self.instances[name] = Instance(name, "Stopped", instance.owner)
            return True

    @property
    def stopped(self) -> list[str]:
        return sorted(name for name, i in self.instances.items() if i.state == "Stopped")


class FakeLedger:
    def __init__(self):
        self.records: dict[tuple[str, date, str], Cancellation] = {}
        self.queries: list[tuple[str, date]] = []
        self.record_calls = 0
        self.errors: list[Exception] = []  # raised by the next calls (record or query), in order
        self._lock = threading.Lock()

    def record(self, cancellation: Cancellation) -> bool:
        with self._lock:
            self.record_calls += 1
            if self.errors:
                raise self.errors.pop(0)
            key = (cancellation.workspace, cancellation.day, cancellation.instance)
            if key in self.records:
                return False
            self.records[key] = cancellation
            return True

    def kept_instances(self, workspace: str, day: date) -> set[str]:
        with self._lock:
            self.queries.append((workspace, day))
            if self.errors:
                raise self.errors.pop(0)
            return {name for (ws, d, name) in self.records if ws == workspace and d == day}


class FakeMailer:
    def __init__(self):
        self.sent: list[OutgoingMail] = []
        self.attempts: list[str] = []
        self.errors: dict[str, list[Exception]] = defaultdict(list)  # per recipient, in order
        self._lock = threading.Lock()

    def send(self, mail: OutgoingMail) -> None:
        with self._lock:
            self.attempts.append(mail.to)
            if self.errors[mail.to]:
                raise self.errors[mail.to].pop(0)
            self.sent.append(mail)

    def to(self, address: str) -> OutgoingMail:
        (mail,) = [m for m in self.sent if m.to == address]
        return mail
