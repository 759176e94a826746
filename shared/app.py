"""The one module the functions call: reads App Settings, builds the adapters, runs one use case.

SDK-backed adapters are imported inside their builders, so loading CancelShutDown never imports
azureml-core or sendgrid, and a timer run imports only what it uses. Tests swap `ADAPTERS` for fakes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from . import redaction
from .cancellation import CancelRequest, CancelResult, keep_instance_tonight
from .notices import NoticeReport, send_shutdown_notices
from .ports import CancelLedger, ComputeWorkspace, Mailer
from .retry import BACKGROUND, INTERACTIVE, RetryPolicy
from .settings import Settings, load_settings
from .sweep import SweepReport, stop_unclaimed_instances

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


def _azureml(settings: Settings) -> ComputeWorkspace:
    from .azureml_workspace import AzureMLWorkspace

    return AzureMLWorkspace(settings)


def _table(settings: Settings) -> CancelLedger:
    from .table_ledger import TableCancelLedger

    return TableCancelLedger(settings.storage_connection_string, settings.cancel_table)


def _sendgrid(settings: Settings) -> Mailer:
    from .sendgrid_mailer import SendGridMailer

    return SendGridMailer(settings.sendgrid_api_key, settings.from_email, settings.from_name)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Adapters:
    workspace: Callable[[Settings], ComputeWorkspace] = _azureml
    ledger: Callable[[Settings], CancelLedger] = _table
    mailer: Callable[[Settings], Mailer] = _sendgrid
    clock: Callable[[], datetime] = _utc_now
    sleep: Callable[[float], None] = time.sleep  # between retries
    monotonic: Callable[[], float] = time.monotonic  # for retry waits; moves with `sleep`


ADAPTERS = Adapters()


def _policy(base: RetryPolicy) -> RetryPolicy:
    return replace(base, sleep=ADAPTERS.sleep, clock=ADAPTERS.monotonic)


def _settings() -> Settings:
    settings = load_settings()
    redaction.protect(settings.secrets())
    return settings


@_no_secret_escapes
def run_mail_sender() -> NoticeReport:
    settings = _settings()
    return send_shutdown_notices(
        settings,
        ADAPTERS.workspace(settings),
        ADAPTERS.mailer(settings),
        ADAPTERS.clock(),
        _policy(BACKGROUND),
    )


@_no_secret_escapes
def run_compute_shutdown() -> SweepReport:
    settings = _settings()
    return stop_unclaimed_instances(
        settings,
        ADAPTERS.workspace(settings),
        ADAPTERS.ledger(settings),
        ADAPTERS.clock(),
        _policy(BACKGROUND),
    )


@_no_secret_escapes
def run_cancel_shutdown(request: CancelRequest) -> CancelResult:
    settings = _settings()
    ledger = ADAPTERS.ledger(settings)
    return keep_instance_tonight(request, settings, ledger, ADAPTERS.clock(), _policy(INTERACTIVE))
