"""The one module the functions call: `bootstrap` reads App Settings and wires one App; its methods run
one use case each.

Adapters are built from plain values, on first use, and their SDKs imported only then: loading
CancelShutDown never imports azureml-core or sendgrid, and a tick with nothing due builds nothing.
Tests call `bootstrap(settings, workspace=..., ledger=..., mailer=..., clock=...)` with fakes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from . import redaction
from .adapters import AdapterFactory
from .cancellation import CancelRequest, CancelResult, keep_instance_tonight
from .host_config import stop_budget
from .links import LinkSigner
from .notices import MailOptions, NoticeReport, send_shutdown_notices
from .ports import CancelLedger, ComputeWorkspace, Mailer
from .reminders import ReminderOptions, send_reminders
from .retry import BACKGROUND, INTERACTIVE, RetryPolicy
from .settings import Settings, load_settings
from .shutdown_calendar import ShutdownCalendar
from .sweep import SweepOptions, SweepReport, stop_unclaimed_instances

P = ParamSpec("P")
R = TypeVar("R")


def _no_secret_escapes(run: Callable[P, R]) -> Callable[P, R]:
    """Whatever leaves a use case leaves it masked: the Functions worker reports an escaping exception
    (text, traceback, cause chain) itself, past the log-record factory."""

    @functools.wraps(run)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return run(*args, **kwargs)
        except Exception as error:
            masked = redaction.scrub(error)
            if masked is error:
                raise
        # Raised outside the except block, so not even a hidden __context__ leads back to the original.
        raise masked

    return guarded


class App:
    """Settings turned into the use cases' explicit values, and the adapters, built when first needed."""

    def __init__(self, settings: Settings, workspace, ledger, mailer, clock, sleep, monotonic):
        self.settings = settings
        self.calendar = ShutdownCalendar(settings.target(), settings.calendar_rules())
        self.signer = LinkSigner(settings.cancel_link_secret)
        self._factories = {"workspace": workspace, "ledger": ledger, "mailer": mailer}
        self._built: dict[str, object] = {}
        self.clock, self.sleep, self.monotonic = clock, sleep, monotonic

    def _adapter(self, name: str):
        if name not in self._built:
            self._built[name] = self._factories[name]()
        return self._built[name]

    @property
    def workspace(self) -> ComputeWorkspace:
        return self._adapter("workspace")

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
        ledger, mailer, policy = _Lazy(self, "ledger"), _Lazy(self, "mailer"), self._policy(BACKGROUND)
        return run_both(
            lambda: send_shutdown_notices(
                now, self.calendar, options, self.signer, _Lazy(self, "workspace"), ledger, mailer, policy
            ),
            lambda: send_reminders(now, self.calendar, reminders, self.signer, ledger, mailer, policy),
        )

    def compute_shutdown(self) -> SweepReport | None:
        options = SweepOptions(self.settings.dry_run, self.settings.max_parallel)
        return stop_unclaimed_instances(
            self.clock(), self.calendar, _Lazy(self, "workspace"), _Lazy(self, "ledger"), options,
            self._policy(BACKGROUND), self.monotonic, stop_budget(),
        )  # fmt: skip

    def cancel_shutdown(self, request: CancelRequest) -> CancelResult:
        return keep_instance_tonight(
            request, self.clock(), self.calendar, self.signer, _Lazy(self, "ledger"),
            self.settings.delay_options, self._policy(INTERACTIVE), sleep=self.sleep,
        )  # fmt: skip


def run_both(first: Callable[[], R], second: Callable[[], object]) -> R:
    """Run both; once both have run, re-raise the first's error (or the second's)."""
    errors: list[Exception] = []
    result = None
    try:
        result = first()
    except Exception as error:
        errors.append(error)
    try:
        second()
    except Exception as error:
        errors.append(error)
    if errors:
        raise errors[0]
    return result


class _Lazy:
    """Stands for an adapter and builds it on its first call, so a tick that does nothing builds nothing."""

    def __init__(self, app: App, name: str):
        self._app, self._name = app, name

    def __getattr__(self, attribute: str):
        return getattr(self._app._adapter(self._name), attribute)


def bootstrap(
    settings: Settings | None = None,
    *,
    workspace: ComputeWorkspace | None = None,
    ledger: CancelLedger | None = None,
    mailer: Mailer | None = None,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> App:
    """The App for these settings (the process's App Settings by default). Adapters given are used as
    they are; the others are built from the settings when first needed."""
    settings = settings or load_settings()
    redaction.protect(settings.secrets())
    build = AdapterFactory(settings)
    return App(
        settings,
        (lambda: workspace) if workspace is not None else build.workspace,
        (lambda: ledger) if ledger is not None else build.ledger,
        (lambda: mailer) if mailer is not None else build.mailer,
        clock or _utc_now,
        sleep,
        monotonic,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


@_no_secret_escapes
def run_mail_sender() -> NoticeReport | None:
    return bootstrap().mail_sender()


@_no_secret_escapes
def run_compute_shutdown() -> SweepReport | None:
    return bootstrap().compute_shutdown()


@_no_secret_escapes
def run_cancel_shutdown(request: CancelRequest) -> CancelResult:
    return bootstrap().cancel_shutdown(request)
