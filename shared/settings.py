"""App Settings, parsed once per run into one frozen object.

This is the only module that reads the process environment. Every problem is collected and reported
in a single ConfigurationError, so an operator fixes them all in one go.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from . import calendar_settings as cal
from . import redaction
from . import setting_rules as rules
from .adapter_settings import AdapterSettings, read_adapter_settings
from .domain import InstanceSelection, WorkspaceTarget
from .errors import ConfigurationError
from .setting_reader import AskedEnviron, Reader
from .shutdown_calendar import CalendarRules
from .workspace_entries import SETTING, WorkspaceEntry, parse_workspaces

DEFAULT_SUBJECT = "Azure ML compute instances stop tonight"
SINGLE_WORKSPACE = ("subscription_id", "resource_group", "aml_workspace", "aml_compute_instance")


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str | None = field(repr=False)  # None: identity-based storage
    workspaces: tuple[WorkspaceEntry, ...]  # aml_workspaces, or the single-workspace settings as one entry
    tenant_id: str | None
    service_principal_id: str | None
    service_principal_password: str | None = field(repr=False)
    sendgrid_api_key: str | None = field(repr=False)  # None: Azure Communication Services Email
    cancel_url: str = field(repr=False)  # its query may hold the function key
    from_email: str
    from_name: str | None
    to_emails: tuple[str, ...]
    subject: str
    cancel_link_secret: str = field(repr=False)
    time_zone: ZoneInfo
    shutdown_time: time
    shutdown_days: frozenset[int]
    warning_minutes: int
    catch_up_minutes: int
    minimum_notice_minutes: int
    skip_dates: tuple[tuple[date, date], ...]
    holidays: tuple[tuple[str, str | None], ...]
    opt_out_tag: str
    delay_options: tuple[int, ...]
    reminder_minutes: int
    notify_instance_owner: bool
    dry_run: bool
    cancel_table: str
    max_parallel: int
    workday_start: time = time(8, 0)
    currency: str = "USD"
    report_emails: tuple[str, ...] = ()
    adapters: AdapterSettings = field(default_factory=AdapterSettings)
    warnings: tuple[str, ...] = ()  # settings that look like misspellings of ours: ignored, and said so

    @property
    def uses_service_principal(self) -> bool:
        return self.service_principal_id is not None

    def target(self) -> WorkspaceTarget:
        """The one workspace of a single-workspace deployment (tests, and the one-entry case)."""
        (entry,) = self.workspaces
        if entry.is_pattern:
            raise ValueError(f"{entry.text} is not one workspace")
        return WorkspaceTarget(
            entry.subscription_id, entry.resource_group, entry.workspace, self.instances_of(entry),
            self.opt_out_tag,
        )  # fmt: skip

    def instances_of(self, entry: WorkspaceEntry) -> InstanceSelection:
        return entry.override("instances", InstanceSelection(every_instance=True))

    def to_emails_of(self, entry: WorkspaceEntry) -> tuple[str, ...]:
        return entry.override("to_emails", self.to_emails)

    def calendar_rules(self, entry: WorkspaceEntry | None = None) -> CalendarRules:
        """The calendar of `entry`: the app-wide calendar settings, with the entry's overrides."""

        def value(name: str):
            default = getattr(self, name)
            return entry.override(name, default) if entry is not None else default

        return CalendarRules(
            zone=value("time_zone"),
            shutdown_time=value("shutdown_time"),
            days=value("shutdown_days"),
            warning=timedelta(minutes=value("warning_minutes")),
            catch_up=timedelta(minutes=self.catch_up_minutes),
            skip_ranges=value("skip_dates"),
            holiday=cal.holiday_lookup(value("holidays")),
            longest_delay=timedelta(minutes=max(self.delay_options, default=0)),
            minimum_notice=timedelta(minutes=value("minimum_notice_minutes")),
        )

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line: the secrets, the function key (and anything
        else credential-like) in the cancel URL's query, and the storage account key or SAS."""
        values = [self.service_principal_password, self.sendgrid_api_key, self.cancel_link_secret]
        query = parse_qsl(urlsplit(self.cancel_url).query)
        values += [value for name, value in query if redaction.is_credential(name, value)]
        for connection in (self.storage_connection_string, self.adapters.acs_connection_string):
            pairs = dict(part.split("=", 1) for part in (connection or "").split(";") if "=" in part)
            values += [pairs.get("AccountKey"), pairs.get("SharedAccessSignature"), pairs.get("accesskey")]
        return tuple(v for v in values if v)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        environ = AskedEnviron(environ)  # what the app reads, to tell a misspelt setting from a foreign one
        reader = Reader(environ)
        values = dict(
            storage_connection_string=reader.optional("AzureWebJobsStorage", rules.connection_string, None),
            workspaces=_read_workspaces(reader, environ),
            tenant_id=reader.optional("tenant_id", rules.matching(rules.TENANT, "tenant id or domain"), None),
            service_principal_id=reader.optional(
                "service_principal_id", rules.matching(rules.GUID, "application (client) id"), None
            ),
            service_principal_password=reader.optional("service_principal_password", str, None),
            sendgrid_api_key=reader.optional("SENDGRID_API_KEY", str.strip, None),
            cancel_url=reader.required("func_cancel_shutdown", rules.cancel_url),
            to_emails=reader.optional("to_emails", rules.optional_email_list, ()),
            subject=reader.optional("subject", rules.one_line, DEFAULT_SUBJECT) or DEFAULT_SUBJECT,
            cancel_link_secret=reader.required("cancel_link_secret", rules.secret),
            time_zone=reader.optional("time_zone", rules.time_zone, ZoneInfo("UTC")),
            shutdown_time=reader.optional("shutdown_time", cal.wall_time, time(20, 0)),
            shutdown_days=reader.optional("shutdown_days", cal.shutdown_days, frozenset(range(7))),
            warning_minutes=reader.optional("warning_minutes", lambda v: rules.bounded_int(v, 5, 720), 60),
            catch_up_minutes=reader.optional("catch_up_minutes", lambda v: rules.bounded_int(v, 0, 720), 120),
            minimum_notice_minutes=reader.optional(
                "minimum_notice_minutes", lambda v: rules.bounded_int(v, 0, 240), 30
            ),
            skip_dates=reader.optional("skip_dates", cal.skip_dates, ()),
            holidays=reader.optional("holidays", cal.holiday_codes, ()),
            opt_out_tag=reader.optional("opt_out_tag", cal.opt_out_tag, "auto-shutdown"),
            # Set but empty means "keep-tonight only"; not set means the default.
            delay_options=reader.optional("delay_options", cal.delay_options, (60, 120), empty=()),
            reminder_minutes=reader.optional("reminder_minutes", lambda v: rules.bounded_int(v, 0, 120), 15),
            notify_instance_owner=reader.optional("notify_instance_owner", rules.boolean, False),
            dry_run=reader.optional("dry_run", rules.boolean, False),
            cancel_table=reader.optional(
                "cancel_table", rules.matching(rules.TABLE_NAME, "table name"), "cishutdown"
            ),
            max_parallel=reader.optional("max_parallel", lambda v: rules.bounded_int(v, 1, 64), 16),
            workday_start=reader.optional("workday_start", cal.wall_time, time(8, 0)),
            currency=reader.optional("currency", rules.currency, "USD"),
            report_emails=reader.optional("report_emails", rules.optional_email_list, ()),
        )
        reader.optional("FUNCTIONS_WORKER_RUNTIME", rules.exactly("python"), "python")
        # Not used (the timers tick in UTC and the app keeps the calendar), but a broken TZ breaks the
        # platform too: name it here rather than let it surface as a traceback somewhere else.
        reader.optional("TZ", rules.time_zone, None)
        from_address = reader.required("from_email", rules.sender)
        values["from_email"], values["from_name"] = from_address or (None, None)
        for name, instead in cal.RETIRED.items():
            if environ.get(name, "").strip():
                reader.problems.append(
                    f"{name} is no longer used: the timers tick every five minutes and the app keeps the "
                    f"calendar; remove it and set {instead} instead"
                )
        _check_combinations(reader, values)
        values["adapters"] = read_adapter_settings(reader, values)
        if reader.problems:
            raise ConfigurationError(reader.problems)
        return cls(**values, warnings=environ.near_misses())


def load_settings() -> Settings:
    """Parse the App Settings of this process (Functions exposes them as environment variables)."""
    return Settings.from_environ(os.environ)


def _read_workspaces(reader: Reader, environ: Mapping[str, str]) -> tuple[WorkspaceEntry, ...]:
    """`aml_workspaces`, or the single-workspace settings as its one entry; never both."""
    if not environ.get(SETTING, "").strip():
        where = (
            reader.required("subscription_id", rules.matching(rules.GUID, "subscription id")),
            reader.required("resource_group", rules.matching(rules.RESOURCE_GROUP, "resource group name")),
            reader.required("aml_workspace", rules.workspace_name),
        )
        instances = reader.required("aml_compute_instance", rules.instance_selection)
        if None in where or instances is None:
            return ()
        return (WorkspaceEntry(*where, overrides=(("instances", instances),)),)
    single = [name for name in SINGLE_WORKSPACE if environ.get(name, "").strip()]
    if single:
        reader.problems.append(
            f"{SETTING} and the single-workspace settings ({', '.join(single)}) are both set: use one form "
            f"(with {SETTING}, give each entry's instances in its JSON form)"
        )
    raw = reader.optional(SETTING, str, "")  # refuses a placeholder left from the example file
    entries, problems = parse_workspaces(raw) if raw else ((), [])
    reader.problems.extend(problems)
    if problems:
        reader.invalid.add(SETTING)
    return entries


def _check_combinations(reader: Reader, values: dict[str, Any]) -> None:
    sp_id, sp_password = values["service_principal_id"], values["service_principal_password"]
    if (
        bool(sp_id) != bool(sp_password)
        and not {"service_principal_id", "service_principal_password"} & reader.invalid
    ):
        reader.problems.append(
            "service_principal_id and service_principal_password must be set together "
            "(or both left out to use the Function App's managed identity)"
        )
    if sp_id and sp_password and not values["tenant_id"] and "tenant_id" not in reader.invalid:
        reader.problems.append("tenant_id is required when a service principal is used")
    longest = max(values["delay_options"], default=0)
    if (
        values["catch_up_minutes"] + longest > 720
        and not {"catch_up_minutes", "delay_options"} & reader.invalid
    ):
        reader.problems.append(
            f"catch_up_minutes ({values['catch_up_minutes']}) plus the longest of delay_options ({longest}) "
            "must not exceed 720: a night's last stop must be over before the next night begins"
        )
    _check_notice(reader, values)
    if values["notify_instance_owner"] or {"to_emails", SETTING} & reader.invalid or not values["workspaces"]:
        return
    unmailed = [e for e in values["workspaces"] if not e.override("to_emails", values["to_emails"])]
    if len(unmailed) == len(values["workspaces"]):
        reader.problems.append("to_emails is required unless notify_instance_owner is true")
    elif unmailed:
        reader.problems.append(
            f"{SETTING} entries {', '.join(e.text for e in unmailed)} have no to_emails (and "
            "notify_instance_owner is false): nobody would be told before their instances stop"
        )


def _check_notice(reader: Reader, values: dict[str, Any]) -> None:
    """The mail must go out at least the minimum notice before the shutdown, in every entry: otherwise
    every instance would be held past its shutdown time, every night."""
    if {"warning_minutes", "minimum_notice_minutes", SETTING} & reader.invalid:
        return
    for entry in values["workspaces"] or (None,):

        def value(name: str, entry=entry):
            return entry.override(name, values[name]) if entry is not None else values[name]

        warning, notice = value("warning_minutes"), value("minimum_notice_minutes")
        if warning < notice:
            where = f" in {SETTING} entry {entry.text}" if entry is not None and entry.overrides else ""
            reader.problems.append(
                f"warning_minutes ({warning}) is shorter than minimum_notice_minutes ({notice}){where}: "
                "the mail must go out at least the minimum notice before the shutdown"
            )
    catch_up = values["catch_up_minutes"]
    if "catch_up_minutes" not in reader.invalid and 2 * catch_up + values["minimum_notice_minutes"] > 720:
        reader.problems.append(
            f"twice catch_up_minutes ({catch_up}) plus minimum_notice_minutes "
            f"({values['minimum_notice_minutes']}) must not exceed 720: an instance told late, at the end of "
            "the catch-up window, must be stopped before the next night begins"
        )


def prepare_sdk_environment() -> None:
    """Switch off azureml-core's built-in retries (it reads this once, when first imported).

    Left on, it sleeps 32-128 s on a 429 regardless of Retry-After and stacks under our RetryPolicy.
    """
    os.environ["AZUREML_DEFAULT_RETRIES"] = "0"
