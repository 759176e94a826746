"""In-memory fakes of the three ports (shared/ports.py). Each records what happened, for assertions."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta

from shared.domain import Cancellation, Instance, Keep, Night, NightRecord, OutgoingMail, StopOutcome
from shared.errors import LostClaimError
from shared.workspace_kinds import ListedWorkspace

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
    "shutdown_time": "20:00",
    "warning_minutes": "180",  # the mail goes out at 17:00 Berlin time
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

    @property
    def calls(self) -> int:
        return self.list_calls + len(self.stop_calls)

    def list_instances(self) -> list[Instance]:
        with self._lock:
            self.list_calls += 1
            if self.list_errors:
                raise self.list_errors.pop(0)
            return list(self.instances.values())

    def stop(self, name: str) -> StopOutcome:
        with self._lock:
            self.stop_calls.append(name)
            if self.stop_errors[name]:
                raise self.stop_errors[name].pop(0)
            instance = self.instances[name]
            if instance.state == "JobRunning":
                return StopOutcome.BUSY  # the real adapters read the state before stopping
            if instance.state != "Running":
                return StopOutcome.NOT_RUNNING
            self.instances[name] = replace(instance, state="Stopped")
            return StopOutcome.STOPPED

    def set_state(self, name: str, state: str) -> None:
        with self._lock:
            self.instances[name] = replace(self.instances[name], state=state)

    @property
    def stopped(self) -> list[str]:
        return sorted(name for name, i in self.instances.items() if i.state == "Stopped")


class FakeLedger:
    """Keeps and night records with the Table adapter's semantics: atomic inserts, ETag-checked updates."""

    def __init__(self, told=None):
        # told(night) -> instance names: as if that night's warning mail had told about them an hour
        # before the shutdown, for tests of the sweep alone (None: only what a mail run recorded).
        self.told_about = told
        self.records: dict[tuple[str, str], Cancellation] = {}  # (night key, instance lower) -> last click
        self.keeps: dict[tuple[str, str], Keep] = {}  # (night key, instance lower) -> keep in force
        self.nights: dict[tuple[str, str], NightRecord] = {}  # (night key, kind) -> record
        self.rows: dict = {}  # (night key, instance lower) -> InstanceNight: the report's rows
        self.queries: list[str] = []
        self.record_calls = 0
        self.calls = 0
        self.errors: list[Exception] = []  # raised by the next calls (any method), in order
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def _call(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def record(self, night: Night, cancellation: Cancellation) -> tuple[bool, Keep]:
        with self._lock:
            self.record_calls += 1
            self._call()
            key = (night.key, cancellation.instance.lower())
            current = self.keeps.get(key)
            if current is None:
                self.records[key] = cancellation
                self.keeps[key] = Keep(cancellation.instance, cancellation.until, cancellation.recipient,
                                       version=str(next(self._versions)),
                                       requested_at=cancellation.requested_at)  # fmt: skip
                return True, self.keeps[key]
            if current.stopping or current.later(cancellation.until) == current.until:
                return False, current
            self.records[key] = cancellation
            self.keeps[key] = replace(  # as the Table adapters merge: the stop time and whose link it was
                current, until=current.later(cancellation.until), recipient=cancellation.recipient,
                version=str(next(self._versions)), requested_at=cancellation.requested_at,
            )  # fmt: skip
            return False, self.keeps[key]

    def keep(self, night: Night, instance: str) -> Keep | None:
        with self._lock:
            self._call()
            return self.keeps.get((night.key, instance.lower()))

    def kept_instances(self, night: Night) -> dict[str, Keep]:
        with self._lock:
            self.queries.append(night.key)
            self._call()
            return {k.instance: k for (key, _), k in self.keeps.items() if key == night.key}

    def mark(
        self, night: Night, keep: Keep, *, stopping: bool = False, reminded: bool = False
    ) -> Keep | None:
        with self._lock:
            self._call()
            key = (night.key, keep.instance.lower())
            current = self.keeps.get(key)
            if current is None or current.version != keep.version:
                return None
            marked = replace(current, stopping=current.stopping or stopping,
                             reminded_for=current.until if reminded else current.reminded_for,
                             version=str(next(self._versions)))  # fmt: skip
            self.keeps[key] = marked
            return marked

    def night_record(self, night: Night, kind: str) -> NightRecord | None:
        with self._lock:
            self._call()
            record = self.nights.get((night.key, kind))
            if record is None and kind == "mail" and self.told_about is not None:
                at = night.shutdown_at - timedelta(hours=1)
                return NightRecord(night.key, kind, "done", at).with_noticed(
                    tuple(self.told_about(night)), at
                )
            return record

    def told(self, night: Night, *instances: str, at: datetime | None = None) -> None:
        """As if the night's warning mail had told about `instances` at `at` (an hour before the shutdown
        by default): for tests of the sweep alone. Counts as no call."""
        at = at or night.shutdown_at - timedelta(hours=1)
        with self._lock:
            current = self.nights.get((night.key, "mail")) or NightRecord(night.key, "mail", "done", at)
            self.nights[(night.key, "mail")] = current.with_noticed(instances, at)

    def claim(self, night: Night, kind: str, now: datetime, lease: timedelta) -> NightRecord | None:
        with self._lock:
            self._call()
            current = self.nights.get((night.key, kind))
            base = (
                current.takeover(now, lease)
                if current
                else NightRecord(night.key, kind, "running", now + lease)
            )
            if base is None:
                return None
            claimed = replace(base, version=str(next(self._versions)))
            self.nights[(night.key, kind)] = claimed
            return claimed

    def save(self, record: NightRecord) -> NightRecord:
        with self._lock:
            self._call()
            current = self.nights.get((record.night_key, record.kind))
            if current is None or current.version != record.version:
                raise LostClaimError(f"another run took over the {record.kind} of {record.night_key}")
            saved = replace(record, version=str(next(self._versions)))
            self.nights[(record.night_key, record.kind)] = saved
            return saved

    def record_outcomes(self, night: Night, rows) -> None:
        with self._lock:
            self._call()
            for row in rows:
                self.rows[(night.key, row.instance.lower())] = row

    def outcomes(self, target, first, last) -> dict:
        with self._lock:
            self._call()
            found: dict = {}
            for (key, _), row in self.rows.items():
                prefix, _, day = key.rpartition("|")
                if prefix == target.key and first.isoformat() <= day <= last.isoformat():
                    found.setdefault(date.fromisoformat(day), []).append(row)
            return found

    def kept_names(self) -> set[str]:
        return {k.instance for k in self.keeps.values()}


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


class FakeDirectory:
    """ARM's listing of workspaces: `ids` are workspace ARM ids (kind Default, as ARM lists most) or
    ListedWorkspace values (a kind, a project's hub); `errors[(sub, rg)]` is raised for a listing."""

    def __init__(self, *ids: str | ListedWorkspace):
        self.ids = list(ids)
        self.calls: list[tuple[str, str | None]] = []
        self.errors: dict[tuple[str, str | None], Exception] = {}

    def list_workspaces(
        self, subscription_id: str, resource_group: str | None = None
    ) -> list[ListedWorkspace]:
        self.calls.append((subscription_id, resource_group))
        if (subscription_id, resource_group) in self.errors:
            raise self.errors[(subscription_id, resource_group)]

        def inside(workspace: ListedWorkspace) -> bool:
            parts = workspace.id.lower().split("/")
            return parts[2] == subscription_id.lower() and parts[4] == (resource_group or parts[4]).lower()

        listed = [i if isinstance(i, ListedWorkspace) else ListedWorkspace(i, "Default") for i in self.ids]
        return [i for i in listed if inside(i)]


def workspace_id(subscription_id: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{name}"
    )


SINGLE_WORKSPACE_OFF = {"subscription_id": None, "resource_group": None, "aml_workspace": None,
                        "aml_compute_instance": None}  # fmt: skip


class FakePrices:
    """PriceList: `prices[(region, size)]` (any case) is the hourly price, in whatever currency is asked;
    a pair not in it is not listed (None). Each call is recorded in `calls`; `errors` are raised by the
    next calls, in order, and `down` (an exception) by every call while it is set."""

    def __init__(self, prices: dict[tuple[str, str], float | None] | None = None):
        self.prices = {(r.lower(), s.lower()): p for (r, s), p in (prices or {}).items()}
        self.calls: list[tuple[str, str, str]] = []
        self.errors: list[Exception] = []
        self.down: Exception | None = None
        self._lock = threading.Lock()

    def set_price(self, region: str, size: str, price: float | None) -> None:
        self.prices[(region.lower(), size.lower())] = price

    def hourly_price(self, region: str, size: str, currency: str) -> float | None:
        with self._lock:
            self.calls.append((region, size, currency))
            if self.down is not None:
                raise self.down
            if self.errors:
                raise self.errors.pop(0)
            return self.prices.get((region.lower(), size.lower()))


class FakePriceCache:
    """PriceCache in memory, keyed like the ledgers' rows (region and size without case, the currency in
    capitals). `reads` counts lookups, `writes` records each store; `errors` are raised by the next calls."""

    def __init__(self):
        self.entries: dict[tuple[str, str, str], tuple[float | None, datetime]] = {}
        self.reads = 0
        self.writes: list[tuple[str, str, str, float | None, datetime]] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()

    @staticmethod
    def key(region: str, size: str, currency: str) -> tuple[str, str, str]:
        return region.lower(), size.lower(), currency.upper()

    def cached_price(self, region: str, size: str, currency: str) -> tuple[float | None, datetime] | None:
        with self._lock:
            self.reads += 1
            if self.errors:
                raise self.errors.pop(0)
            return self.entries.get(self.key(region, size, currency))

    def cache_price(
        self, region: str, size: str, currency: str, price: float | None, fetched_at: datetime
    ) -> None:
        with self._lock:
            if self.errors:
                raise self.errors.pop(0)
            self.writes.append((region, size, currency, price, fetched_at))
            self.entries[self.key(region, size, currency)] = (price, fetched_at)
