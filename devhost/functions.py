"""Find and load the app's functions the way the Azure Functions Python worker does (classic model).

Each folder beside host.json with a function.json is a function. Its `scriptFile` (default
`__init__.py`) is imported as part of the folder's package with the app root on sys.path, its
`entryPoint` (default `main`) is called with keyword arguments named after the input bindings, and an
HTTP function's return value is its `$return` binding.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class FunctionLoadError(Exception):
    pass


@dataclass(frozen=True)
class Function:
    name: str
    trigger: dict[str, Any]  # the trigger binding from function.json
    entry: Callable[..., Any] = field(repr=False)
    returns_http: bool = False

    @property
    def kind(self) -> str:
        return self.trigger["type"]

    @property
    def binding_name(self) -> str:
        return self.trigger["name"]

    @property
    def methods(self) -> set[str] | None:
        methods = self.trigger.get("methods")
        return {m.upper() for m in methods} if methods else None

    @property
    def route(self) -> str:
        return self.trigger.get("route") or self.name

    def schedule(self, environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
        """The NCRONTAB schedule, with `%AppSetting%` references resolved like the host does."""

        def resolve(match: re.Match[str]) -> str:
            name = match.group(1)
            if not environ.get(name):
                raise FunctionLoadError(
                    f"{self.name}: schedule '%{name}%' does not resolve to an App Setting"
                )
            return environ[name]

        return re.sub(r"%([^%]+)%", resolve, self.trigger["schedule"])

    def __call__(self, trigger_value: Any) -> Any:
        return self.entry(**{self.binding_name: trigger_value})


def discover(app_root: Path) -> list[Function]:
    if not (app_root / "host.json").exists():
        raise FunctionLoadError(f"{app_root} is not a Functions app (no host.json)")
    if str(app_root) not in sys.path:
        sys.path.insert(0, str(app_root))
    folders = sorted(p.parent for p in app_root.glob("*/function.json"))
    return [_load(folder) for folder in folders]


def _load(folder: Path) -> Function:
    spec = json.loads((folder / "function.json").read_text(encoding="utf-8"))
    if spec.get("disabled"):
        raise FunctionLoadError(f"{folder.name}: disabled functions are not supported by the dev host")
    bindings = spec.get("bindings", [])
    triggers = [b for b in bindings if b.get("direction") == "in" and b.get("type", "").endswith("Trigger")]
    if len(triggers) != 1 or triggers[0]["type"] not in ("httpTrigger", "timerTrigger"):
        raise FunctionLoadError(
            f"{folder.name}: exactly one httpTrigger or timerTrigger binding is supported"
        )
    outputs = [b for b in bindings if b.get("direction") == "out"]
    if any(b.get("name") != "$return" for b in outputs):
        raise FunctionLoadError(f"{folder.name}: only a `$return` output binding is supported")
    script = spec.get("scriptFile", "__init__.py")
    module_name = folder.name if script == "__init__.py" else f"{folder.name}.{Path(script).stem}"
    module = importlib.import_module(module_name)
    entry = getattr(module, spec.get("entryPoint", "main"), None)
    if not callable(entry):
        raise FunctionLoadError(
            f"{folder.name}: {script} has no entry point {spec.get('entryPoint', 'main')!r}"
        )
    returns_http = any(b.get("type") == "http" for b in outputs)
    return Function(folder.name, triggers[0], entry, returns_http)
