"""Pure decisions: who is told what, and which instances are stopped. Plain values in, plain values out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from .domain import Instance, InstanceSelection
from .setting_rules import EMAIL

MAX_NAMES_IN_SUBJECT = 3


@dataclass(frozen=True)
class Targets:
    instances: tuple[Instance, ...]
    missing: tuple[str, ...]  # names from aml_compute_instance the workspace does not have


@dataclass(frozen=True)
class ShutdownPlan:
    stop: tuple[Instance, ...] = ()
    kept: tuple[Instance, ...] = ()  # running, but somebody asked to keep it tonight
    busy: tuple[Instance, ...] = ()  # running a job: never stopped
    not_running: tuple[Instance, ...] = ()
    opted_out: tuple[Instance, ...] = ()  # its opt-out tag says so: never mailed about or stopped
    stopped_before: tuple[Instance, ...] = ()  # stopped earlier this night; running again means restarted


@dataclass(frozen=True)
class OptOuts:
    instances: tuple[Instance, ...] = ()
    warnings: tuple[str, ...] = ()  # tags with a value we do not understand, naming the instance


OPT_OUT_VALUES = {"off", "false", "no", "never"}


def opt_outs(instances: Iterable[Instance], tag: str, day: date) -> OptOuts:
    """Instances whose `tag` keeps them out of the night of `day`: `off`/`false`/`no`/`never` (any case)
    always, an ISO date up to and including that date. Any other value is ignored, with a warning."""
    out, warnings = [], []
    for instance in instances:
        value = (instance.tag(tag) or "").strip()
        if not value:
            continue
        if value.lower() in OPT_OUT_VALUES:
            out.append(instance)
            continue
        try:
            if day <= date.fromisoformat(value):
                out.append(instance)
        except ValueError:
            warnings.append(
                f"{instance.name}: tag {tag}={value!r} is neither off/false/no/never nor a date "
                "(YYYY-MM-DD); ignored"
            )
    return OptOuts(tuple(out), tuple(warnings))


@dataclass(frozen=True)
class MailPlan:
    by_recipient: dict[str, tuple[Instance, ...]] = field(default_factory=dict)


def select_targets(instances: Iterable[Instance], selection: InstanceSelection) -> Targets:
    """The selected instances as Azure lists and spells them; names compare without case, as Azure's do."""
    listed = {instance.name.lower(): instance for instance in instances}
    if selection.every_instance:
        return Targets(tuple(sorted(listed.values(), key=lambda i: i.name)), ())
    found = tuple(listed[name.lower()] for name in selection.names if name.lower() in listed)
    missing = tuple(name for name in selection.names if name.lower() not in listed)
    return Targets(found, missing)


def plan_shutdown(
    targets: Iterable[Instance],
    kept_names: Iterable[str],
    opted_out: Iterable[Instance] = (),
    stopped_before: Iterable[str] = (),
) -> ShutdownPlan:
    keep = {name.lower() for name in kept_names}
    out = {instance.name.lower() for instance in opted_out}
    earlier = {name.lower() for name in stopped_before}
    groups: dict[str, list[Instance]] = {k: [] for k in ("stop", "kept", "busy", "idle", "out", "before")}
    for instance in targets:
        name = instance.name.lower()
        if name in out:
            group = "out"
        elif instance.is_busy:
            group = "busy"
        elif not instance.is_running:
            group = "idle"
        elif name in keep:
            group = "kept"
        elif name in earlier:
            group = "before"  # its owner started it again after tonight's stop: theirs to keep
        else:
            group = "stop"
        groups[group].append(instance)
    return ShutdownPlan(*(tuple(groups[k]) for k in ("stop", "kept", "busy", "idle", "out", "before")))


def announced(targets: Iterable[Instance]) -> tuple[Instance, ...]:
    """Instances tonight's sweep may stop, hence worth a mail and a link.

    A busy instance is included: if its job ends before the sweep, it is stopped like any other.
    """
    return tuple(instance for instance in targets if instance.is_running or instance.is_busy)


def plan_mails(
    instances: Sequence[Instance], to_emails: Sequence[str], notify_instance_owner: bool
) -> MailPlan:
    """One entry per recipient: the fixed recipients hear about every instance, owners about theirs."""
    by_recipient: dict[str, list[Instance]] = {}
    keys: dict[str, str] = {}  # addresses compare case-insensitively; keep the first spelling

    def add(address: str, instance: Instance) -> None:
        key = keys.setdefault(address.lower(), address)
        bucket = by_recipient.setdefault(key, [])
        if instance not in bucket:
            bucket.append(instance)

    for instance in instances:
        for address in to_emails:
            add(address, instance)
        if notify_instance_owner and instance.owner and EMAIL.fullmatch(instance.owner):
            add(instance.owner, instance)
    return MailPlan({to: tuple(items) for to, items in by_recipient.items()})


def mail_subject(prefix: str, names: Sequence[str]) -> str:
    """`prefix – a, b, c` or `prefix – a, b, c and 4 more`; never more than one line."""
    shown = ", ".join(names[:MAX_NAMES_IN_SUBJECT])
    more = len(names) - MAX_NAMES_IN_SUBJECT
    listing = f"{shown} and {more} more" if more > 0 else shown
    head = " ".join(prefix.split()).rstrip(" :-–—|")
    return f"{head} – {listing}" if listing else head
