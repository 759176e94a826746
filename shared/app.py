"""The one module the functions call: `bootstrap` reads App Settings and wires one App; its methods run
one use case each.

Adapters are built from plain values, on first use, and their SDKs imported only then: loading
CancelShutDown never imports azureml-core or sendgrid, and a tick with nothing due builds nothing.
Tests call `bootstrap(settings, workspace=..., ledger=..., mailer=..., clock=...)` with fakes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from . import redaction
from .adapters import AdapterFactory
from .cancellation import CancelRequest, CancelResult, keep_instance_tonight
from .domain import WorkspaceTarget
from .estate import Estate, Managed, Scope
from .estate_sweep import sweep_estate
from .guards import no_secret_escapes, run_both
from .host_config import stop_budget
from .links import CancelGrant, LinkSigner, unmanaged
from .notices import MailOptions, NoticeReport, WorkspaceNotice, send_notices
from .ports import CancelLedger, ComputeWorkspace, Mailer, PriceList, WorkspaceDirectory
from .preflight import Preflight, preflight
from .reminders import ReminderOptions, remind_everyone
from .report import ReportOptions, send_report
from .retry import BACKGROUND, INTERACTIVE, RetryPolicy
from .settings import Settings, load_settings
from .shutdown_calendar import ShutdownCalendar
from .sweep import SweepOptions, SweepReport

log = logging.getLogger(__name__)


class App:
    """Settings turned into the use cases' explicit values, and the adapters, built when first needed."""

    def __init__(self, settings: Settings, adapters: dict[str, Callable], clock, sleep, monotonic):
        self.settings = settings
        self.estate = Estate(
            Scope(e, settings.calendar_rules(e), settings.instances_of(e), settings.opt_out_tag,
                  settings.to_emails_of(e))
            for e in settings.workspaces
        )  # fmt: skip
        self.signer = LinkSigner(settings.cancel_link_secret)
        self._factories = adapters
        self._built: dict[object, object] = {}
        self.clock, self.sleep, self.monotonic = clock, sleep, monotonic

    def _adapter(self, name: str, *args):
        if (name, *args) not in self._built:
            self._built[(name, *args)] = self._factories[name](*args)
        return self._built[(name, *args)]

    def workspace_for(self, target: WorkspaceTarget) -> ComputeWorkspace:
        """The workspace's adapter, built on its first call (one sign-in per run, whatever the count)."""
        return _Lazy(self, "workspace", target.subscription_id, target.resource_group, target.name)

    @property
    def calendar(self) -> ShutdownCalendar:
        """The calendar of a single-workspace deployment."""
        return self._single().calendar

    @property
    def workspace(self) -> ComputeWorkspace:
        """The adapter of a single-workspace deployment, built now."""
        target = self._single().target
        return self._adapter("workspace", target.subscription_id, target.resource_group, target.name)

    def _single(self) -> Managed:
        single = self.estate.single()
        if single is None:
            raise ValueError("this deployment manages more than one workspace")
        return single

    @property
    def ledger(self) -> CancelLedger:
        return self._adapter("ledger")

    @property
    def mailer(self) -> Mailer:
        return self._adapter("mailer")

    def _policy(self, base: RetryPolicy) -> RetryPolicy:
        return replace(base, sleep=self.sleep, clock=self.monotonic)

    def mail_sender(self) -> NoticeReport | None:
        """The night's warning mails, and reminders before delayed stops: one failing never keeps the
        other from going out, and the run fails if either did."""
        s, now = self.settings, self.clock()
        options = MailOptions(
            s.cancel_url, s.subject, s.to_emails, s.notify_instance_owner, s.dry_run, s.max_parallel
        )
        reminders = ReminderOptions(s.cancel_url, s.reminder_minutes, s.dry_run)
        before = timedelta(minutes=s.reminder_minutes)
        ledger, mailer, policy = _Lazy(self, "ledger"), _Lazy(self, "mailer"), self._policy(BACKGROUND)
        due, failures = self.estate.due(
            lambda c: c.notice_due(now) or c.reminder_due(now, before), _Lazy(self, "directory"), policy
        )
        notices = [WorkspaceNotice(m.calendar, self.workspace_for(m.target), m.to_emails) for m in due]
        named, calendars = self.estate.single() is None, [m.calendar for m in due]
        return run_both(
            lambda: send_notices(
                now, notices, options, self.signer, ledger, mailer, policy, failures=failures, named=named
            ),
            lambda: remind_everyone(now, calendars, reminders, self.signer, ledger, mailer, policy, named),
        )

    def compute_shutdown(self) -> list[SweepReport] | None:
        """The sweeps that are due, then the morning-after report if it is: one failing never keeps the
        other from running, and the run fails if either did."""
        s, now, policy = self.settings, self.clock(), self._policy(BACKGROUND)
        for entry, (day, why) in self.estate.skipped(now):
            log.info("ComputeShutdown: no shutdown in %s on %s: %s", entry, day, why)
        directory, ledger, prices = _Lazy(self, "directory"), _Lazy(self, "ledger"), _Lazy(self, "prices")
        options = SweepOptions(s.dry_run, s.max_parallel, s.workday_start, s.currency)

        def sweep() -> list[SweepReport] | None:
            due, failures = self.estate.due(lambda c: c.sweep_due(now) or c.audit_due(now), directory, policy)
            if not due and not failures:
                return None  # the common case: no remote call at all
            workspaces = [(m.calendar, self.workspace_for(m.target)) for m in due]
            return sweep_estate(
                now, workspaces, ledger, options, policy, self.monotonic, stop_budget(), failures,
                named=self.estate.single() is None, prices=prices,
            )  # fmt: skip

        report = ReportOptions(s.report_emails, s.currency, s.dry_run)
        mailer = _Lazy(self, "mailer")
        return run_both(
            sweep, lambda: send_report(now, self.estate, report, directory, ledger, mailer, prices, policy)
        )

    def preflight(self) -> Preflight:
        """What tonight would do, for every workspace the settings name: reads only."""
        return preflight(
            self.clock(), self.estate, _Lazy(self, "directory"), self.workspace_for, _Lazy(self, "ledger"),
            self.settings.notify_instance_owner, self._policy(BACKGROUND),
        )  # fmt: skip

    def cancel_shutdown(self, request: CancelRequest) -> CancelResult:
        return keep_instance_tonight(
            request, self.clock(), self._calendar_of, self.signer, _Lazy(self, "ledger"),
            self.settings.delay_options, self._policy(INTERACTIVE), sleep=self.sleep,
        )  # fmt: skip

    def _calendar_of(self, grant: CancelGrant) -> ShutdownCalendar:
        """The calendar of the workspace a (genuine) link names; no remote call."""
        managed = self.estate.find(grant.workspace)
        if managed is None:
            raise unmanaged(grant)
        return managed.calendar


class _Lazy:
    """Stands for an adapter and builds it on its first call, so a tick that does nothing builds nothing."""

    def __init__(self, app: App, name: str, *args: str):
        self._app, self._name, self._args = app, name, args

    def __getattr__(self, attribute: str):
        return getattr(self._app._adapter(self._name, *self._args), attribute)


def bootstrap(
    settings: Settings | None = None,
    *,
    workspace: ComputeWorkspace | None = None,
    workspaces: Callable[[str, str, str], ComputeWorkspace] | None = None,
    directory: WorkspaceDirectory | None = None,
    ledger: CancelLedger | None = None,
    mailer: Mailer | None = None,
    prices: PriceList | None = None,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> App:
    """The App for these settings (the process's App Settings by default). Adapters given are used as
    they are: `workspace` for every workspace, or `workspaces(subscription_id, resource_group, name)`;
    the others are built from the settings when first needed."""
    settings = settings or load_settings()
    redaction.protect(settings.secrets())
    for warning in settings.warnings:
        log.warning("Settings: %s", warning)
    build = AdapterFactory(settings)
    if workspace is not None:
        workspaces = lambda *where: workspace  # noqa: E731
    adapters = {
        "workspace": workspaces or (lambda *where: build.workspace(*where)),
        "directory": lambda: directory if directory is not None else build.directory(),
        "ledger": lambda: ledger if ledger is not None else build.ledger(),
        "mailer": lambda: mailer if mailer is not None else build.mailer(),
    }
    the_app = App(settings, adapters, clock or _utc_now, sleep, monotonic)
    # The price cache is the run's ledger (its table), whichever ledger the App was given.
    adapters["prices"] = lambda: prices if prices is not None else build.prices(the_app.ledger)
    return the_app


def _utc_now() -> datetime:
    return datetime.now(UTC)


@no_secret_escapes
def run_mail_sender() -> NoticeReport | None:
    return bootstrap().mail_sender()


@no_secret_escapes
def run_compute_shutdown() -> list[SweepReport] | None:
    return bootstrap().compute_shutdown()


@no_secret_escapes
def run_cancel_shutdown(request: CancelRequest) -> CancelResult:
    return bootstrap().cancel_shutdown(request)
