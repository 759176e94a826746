"""Reading App Settings one by one, collecting every problem so that one error can name them all."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from . import setting_rules as rules

FREE_TEXT = {"subject"}
SIGN_IN = {
    "tenant_id",
    "service_principal_id",
    "service_principal_password",
}  # optional: identity if absent  # shown to people as written: `<` and `>` are text there, never a placeholder


_UNSET = object()


class Reader:
    """Reads App Settings one by one, collecting every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[str] = []
        self.invalid: set[str] = set()

    def required(self, name: str, parse: Callable[[str], Any]) -> Any:
        raw = self.environ.get(name, "")
        if not raw.strip():
            self.problems.append(f"{name} is required but missing")
            self.invalid.add(name)
            return None
        return self._parse(name, raw, parse, None)

    def optional(self, name: str, parse: Callable[[str], Any], default: Any, empty: Any = _UNSET) -> Any:
        """`default` when not set; `empty` (default: `default`) when set to nothing but blanks."""
        raw = self.environ.get(name)
        if raw is None:
            return default
        if not raw.strip():
            return default if empty is _UNSET else empty
        return self._parse(name, raw, parse, default)

    def _parse(self, name: str, raw: str, parse: Callable[[str], Any], default: Any) -> Any:
        try:
            if name not in FREE_TEXT:
                rules.not_a_placeholder(raw)
            return parse(raw)
        except ValueError as problem:
            why = f"{name} {problem}"
            if name in SIGN_IN and rules.is_placeholder(raw):  # the recommended way needs them gone
                why += (
                    ", or remove it to sign in with the Function App's managed identity (or, locally, "
                    "with `az login`)"
                )
            self.problems.append(why)
            self.invalid.add(name)
            return default


class AskedEnviron(Mapping):
    """The environment, remembering which names the app asked for."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ, self.asked = environ, set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._environ[name]

    def get(self, name: str, default=None):
        self.asked.add(name)
        return self._environ.get(name, default)

    def __iter__(self):
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def near_misses(self) -> tuple[str, ...]:
        """A set name the app does not read but that is one letter or so from one it does (`timezone`,
        `shutdown_day`): the platform's own settings are upper case, so only names with a lower-case
        letter are considered."""
        found = []
        for name in sorted(set(self._environ) - self.asked):
            if any(c.islower() for c in name) and (meant := near_miss(name, sorted(self.asked))):
                found.append(f"{name} is not a setting of this app, so it is ignored: did you mean {meant}?")
        return tuple(found)


def near_miss(name: str, known) -> str | None:
    """The known name `name` is most likely a misspelling of (`timezone` for `time_zone`), if any."""
    found = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.8)
    return next((k for k in known if found and k.lower() == found[0]), None)
