"""What a person may choose on the confirmation page: stop it later (shutdown + N minutes, one button per
`delay_options` entry), or keep it running all night. Pure functions of the night, the time and the keep
in force; the form's field `delay` with values `60`, `120`, ... or `night` is a public interface. A stop
time is shown as a local clock time, with its zone when that differs from the shutdown's (the autumn
night's +1 h after a 02:30 shutdown is 02:30 again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from .domain import Keep, Night
from .errors import InvalidChoiceError
from .rendering import clock

NIGHT = "night"


@dataclass(frozen=True)
class Choice:
    value: str  # what the button posts as `delay`
    until: datetime | None  # the new stop time; None: all night


def offered(
    night: Night, now: datetime, delay_options: Sequence[int], in_force: Keep | None
) -> tuple[Choice, ...]:
    """The delays that still mean something: later than now and than the keep in force (the latest
    stop time wins, so an earlier one would change nothing), then keeping it all night."""
    later = []
    for minutes in delay_options:
        until = night.shutdown_at + timedelta(minutes=minutes)
        if until > now and (in_force is None or (in_force.until is not None and until > in_force.until)):
            later.append(Choice(str(minutes), until))
    return (*later, Choice(NIGHT, None))


def label(choice: Choice, instance: str, night: Night, zone: tzinfo) -> str:
    """The button's words, with the stop time's zone when its UTC offset is not the shutdown's."""
    if choice.until is None:
        return f"Keep {instance} running tonight"
    return f"Stop it at {clock(choice.until, zone, beside=night.shutdown_at)} instead"


def allowed(night: Night, now: datetime, delay_options: Sequence[int]) -> tuple[Choice, ...]:
    """What a POST may ask for: any configured delay still ahead, or all night. A page opened earlier may
    offer a time that someone else has since outbid; posting it is no error: the latest time holds."""
    return offered(night, now, delay_options, None)


def chosen(value: str | None, choices: Sequence[Choice]) -> Choice:
    """The choice a POST asks for; no `delay` at all means all night (as links mailed before delays
    existed expect). A value that is not allowed now is refused: nothing is written."""
    wanted = NIGHT if value is None else value.strip().lower()
    for choice in choices:
        if choice.value == wanted:
            return choice
    raise InvalidChoiceError(
        "This choice is not (or no longer) available for this instance.",
        "Nothing was changed. Open the link again and pick one of the buttons on the page.",
    )
