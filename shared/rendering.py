"""Templates (shared/templates/) rendered with Jinja2. HTML is autoescaped; plain text is not HTML."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        # .txt is plain text (escaping would turn '&' in links into '&amp;'); everything else escapes.
        autoescape=select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: object) -> str:
    """Render `template`; `.html` files escape every value, `.txt` files keep text as it is."""
    return _environment().get_template(template).render(**context)


def format_local(instant: datetime, zone: tzinfo) -> str:
    """'Tuesday 24 November 2026 at 20:00 CET (Europe/Berlin)' - unambiguous for a reader anywhere."""
    local = instant.astimezone(zone)
    key = getattr(zone, "key", None)
    # "CET" alone is ambiguous across countries; "UTC (Etc/UTC)" would only repeat itself.
    universal = local.utcoffset() == timedelta(0) and local.tzname() in ("UTC", "GMT")
    suffix = f" ({key})" if key and key != local.tzname() and not universal else ""
    return f"{local:%A} {local.day} {local:%B %Y at %H:%M} {local.tzname()}{suffix}"


def clock(instant: datetime, zone: tzinfo, beside: datetime | None = None) -> str:
    """'21:00', or '02:30 CET' when `beside` (the time it is read next to) has another UTC offset: on
    the autumn night 02:30 comes twice, and only the zone tells the two apart."""
    local = instant.astimezone(zone)
    if beside is not None and beside.astimezone(zone).utcoffset() != local.utcoffset():
        return f"{local:%H:%M} {local.tzname()}"
    return f"{local:%H:%M}"


def relative_day(instant: datetime, now: datetime, zone: tzinfo) -> str:
    """How a person reading at `now` calls the day of `instant`: tonight, today, tomorrow, or its name."""
    local, today = instant.astimezone(zone), now.astimezone(zone).date()
    days = (local.date() - today).days
    if (days == 0 and local.hour >= 17) or (days == 1 and local.hour < 5):
        return "tonight"
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    return f"on {local:%A} {local.day} {local:%B}"
