"""`aml_workspaces`: the Azure ML workspaces one deployment manages, with per-workspace overrides.

Two forms (the setting's names and keys are a public interface):
- short: entries separated by `;` or newlines, each `subscription_id/resource_group/workspace`, a
  workspace's full ARM id, `subscription_id/resource_group/*` or `subscription_id/*` (every workspace
  the app's identity can see there, found through ARM on the ticks that need them);
- JSON: an array of objects with `subscription_id`, `resource_group` (optional with `"workspace": "*"`),
  `workspace` (a name or `*`) and any of OVERRIDES, which replace the app-wide setting for that entry.
A workspace matched by several entries belongs to the most specific one: a named workspace before
`subscription_id/resource_group/*`, which comes before `subscription_id/*`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import calendar_settings as cal
from . import setting_rules as rules
from .domain import WORKSPACE_ID, WORKSPACE_NAME
from .setting_reader import near_miss

SETTING = "aml_workspaces"
EVERY = "*"
OVERRIDES = {
    "instances": rules.instance_selection,
    "time_zone": rules.time_zone,
    "shutdown_time": cal.wall_time,
    "shutdown_days": cal.shutdown_days,
    "warning_minutes": lambda v: rules.bounded_int(v, 5, 720),
    "minimum_notice_minutes": lambda v: rules.bounded_int(v, 0, 240),
    "skip_dates": cal.skip_dates,
    "holidays": cal.holiday_codes,
    "to_emails": rules.optional_email_list,
}
PLACES = ("subscription_id", "resource_group", "workspace")
SHORT_FORMS = (
    "subscription_id/resource_group/workspace, a workspace's ARM id (/subscriptions/.../workspaces/name), "
    "subscription_id/resource_group/* or subscription_id/*"
)


@dataclass(frozen=True)
class WorkspaceEntry:
    """One entry: a workspace, or every workspace of a resource group (or subscription) when `*`."""

    subscription_id: str
    resource_group: str | None  # None: every resource group (`subscription_id/*`)
    workspace: str  # a workspace name, or EVERY
    overrides: tuple[tuple[str, Any], ...] = ()  # parsed values, by setting name

    @property
    def is_pattern(self) -> bool:
        return self.workspace == EVERY

    @property
    def specificity(self) -> int:
        return 2 if not self.is_pattern else 1 if self.resource_group else 0

    @property
    def text(self) -> str:
        """How the entry reads in messages and logs: `sub/rg/ws`, `sub/rg/*` or `sub/*`."""
        return "/".join(p for p in (self.subscription_id, self.resource_group, self.workspace) if p)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple((p or "").lower() for p in (self.subscription_id, self.resource_group, self.workspace))

    def override(self, name: str, default: Any) -> Any:
        return dict(self.overrides).get(name, default)

    def matches(self, subscription_id: str, resource_group: str, workspace: str) -> bool:
        """Whether this entry covers that workspace (Azure names ignore case)."""
        wanted = (subscription_id.lower(), resource_group.lower(), workspace.lower())
        sub, rg, ws = self.key
        return sub == wanted[0] and (not rg or rg == wanted[1]) and (self.is_pattern or ws == wanted[2])


def parse_workspaces(value: str) -> tuple[tuple[WorkspaceEntry, ...], list[str]]:
    """The entries of `aml_workspaces`, and a problem for every malformed or repeated one."""
    text = value.strip()
    if text.startswith(("[", "{")):
        entries, problems = _json_entries(text)
    else:
        items = [item.strip() for item in re.split(r"[;\n]", text)]
        entries, problems = [], []
        for number, item in enumerate((i for i in items if i), start=1):
            try:
                entries.append((number, _short_entry(item)))
            except ValueError as problem:
                problems.append(f"{SETTING} entry {number} ({item[:120]!r}) {problem}")
    if not entries and not problems:
        problems.append(f"{SETTING} names no workspace")
    first: dict[tuple[str, ...], int] = {}
    for number, entry in entries:
        if entry.key in first:
            problems.append(
                f"{SETTING} entries {first[entry.key]} and {number} both name {entry.text}: keep one"
            )
        first.setdefault(entry.key, number)
    return tuple(entry for _, entry in entries), problems


def _short_entry(item: str) -> WorkspaceEntry:
    if item.startswith("/"):
        if not WORKSPACE_ID.fullmatch(item.rstrip("/")):
            raise ValueError("is not the ARM id of an Azure ML workspace")
        parts = item.rstrip("/").split("/")
        return _entry(parts[2], parts[4], parts[8])
    parts = [part.strip() for part in item.split("/")]
    if len(parts) == 2 and parts[1] == EVERY:
        return _entry(parts[0], None, EVERY)
    if len(parts) != 3:
        raise ValueError(f"must be one of {SHORT_FORMS}")
    return _entry(*parts)


def _entry(subscription_id: str, resource_group: str | None, workspace: str, overrides=()) -> WorkspaceEntry:
    bad = []
    if not rules.GUID.fullmatch(subscription_id or ""):
        bad.append(f"subscription id {subscription_id!r}")
    if resource_group is not None and not rules.RESOURCE_GROUP.fullmatch(resource_group):
        bad.append(f"resource group {resource_group!r}")
    if workspace != EVERY and not WORKSPACE_NAME.fullmatch(workspace or ""):
        bad.append(f"workspace name {workspace!r} (3-33 letters, digits, - and _, or *)")
    if bad:
        raise ValueError(f"has an invalid {' and an invalid '.join(bad)}")
    return WorkspaceEntry(subscription_id, resource_group, workspace, tuple(overrides))


def _json_entries(text: str) -> tuple[list[tuple[int, WorkspaceEntry]], list[str]]:
    try:
        items = json.loads(text)
    except ValueError as error:
        return [], [f"{SETTING} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"]
    if not isinstance(items, list):
        return [], [f"{SETTING} in the JSON form must be an array of objects, one per workspace entry"]
    entries, problems = [], []
    for number, item in enumerate(items, start=1):
        try:
            entries.append((number, _json_entry(item)))
        except ValueError as error:  # every problem of the entry, none hiding another
            problems += [f"{SETTING} entry {number} {problem}" for problem in error.args]
    return entries, problems


def _json_entry(item: object) -> WorkspaceEntry:
    if not isinstance(item, dict):
        raise ValueError(
            'must be an object like {"subscription_id": ..., "resource_group": ..., "workspace": ...}'
        )
    problems = []
    unknown = sorted(set(item) - set(PLACES) - set(OVERRIDES))
    if unknown:
        named = ", ".join(f"{key} (did you mean {near}?)" if (near := near_miss(key, (*PLACES, *OVERRIDES)))
                          else key for key in unknown)  # fmt: skip
        problems.append(f"has unknown key(s) {named}; allowed: {', '.join((*PLACES, *OVERRIDES))}")
    places = {name: item.get(name) for name in PLACES}
    if any(v is not None and not isinstance(v, str) for v in places.values()):
        raise ValueError(*problems, "must give subscription_id, resource_group and workspace as strings")
    missing = [
        n for n in PLACES if not places[n] and not (n == "resource_group" and places["workspace"] == EVERY)
    ]
    if missing:
        problems.append(f"is missing {', '.join(missing)}")
    overrides = []
    where = f"({places['subscription_id']}/{places['resource_group'] or ''}/{places['workspace']})".replace(
        "//", "/"
    )
    for name, parse in OVERRIDES.items():
        if name not in item:
            continue
        try:
            rules.not_a_placeholder(_as_text(item[name]))
            overrides.append((name, parse(_as_text(item[name]))))
        except ValueError as problem:
            problems.append(f"{where}: {name} {problem}")
    if problems:
        raise ValueError(*problems)
    try:
        return _entry(places["subscription_id"], places["resource_group"], places["workspace"], overrides)
    except ValueError as problem:
        raise ValueError(f"{where} {problem}") from None


def _as_text(value: object) -> str:
    """A JSON value as the App Setting text it stands for: `["Mon", "Fri"]` is `Mon,Fri`, 60 is `60`."""
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"must be a string, a whole number or a list of them, not {json.dumps(value)[:60]}")
