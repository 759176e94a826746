"""python -m devhost: serve the Functions app locally, at the URLs `func start` uses.

Without local.settings.json it runs the self-contained demo (Azurite + loopback AzureML and SendGrid
stand-ins; two workspaces in two time zones). With it, it loads its Values like `func start` and talks to whatever they point at; a
`UseDevelopmentStorage=true` storage setting gets a local Azurite on the standard port.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ConfigurationError

from . import local_settings
from .functions import FunctionLoadError, discover
from .http_host import FunctionsHost
from .timers import TimerScheduler, schedule_zone

if TYPE_CHECKING:
    from .demo import Demo

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("Host")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s", stream=sys.stdout)
    stop_signals = _StopSignals()  # SIGTERM stops as cleanly as Ctrl-C, and only once
    cleanups: list[Callable[[], None]] = []  # run in reverse order, whatever happens
    try:
        schedule_zone()  # a bad TZ fails before anything starts
        functions = discover(ROOT)
        host = _bind(args.port, functions)  # before anything else starts: a taken port fails fast
        cleanups.append(host.server_close)
        demo = _environment(args, cleanups)
        timers = TimerScheduler(functions)
        _announce(functions, timers, args.port)
        host.serve_in_background()
        cleanups.append(host.shutdown)
        if demo:
            demo.send_mail_now(functions)  # before the timers start, so that no tick races it
        timers.start()
        cleanups.append(timers.stop)
        print(demo.steps(timers) if demo else f"Using App Settings from {args.settings}.", flush=True)
        print(f"Host ready on http://localhost:{args.port}", flush=True)
        while True:  # wake up often: a signal may land on another thread, and only this one handles it
            time.sleep(0.25)
    except KeyboardInterrupt:
        print("Stopping...", flush=True)
    except ConfigurationError as error:  # one line naming every problem, no traceback
        print(f"Cannot start: App Settings: {'; '.join(error.problems)}", file=sys.stderr, flush=True)
        return 1
    except (FunctionLoadError, local_settings.LocalSettingsError, ValueError) as error:
        print(f"Cannot start: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        stop_signals.restore()
    return 0


def _checked_settings() -> tuple[str, ...]:
    """The App Settings as the functions will read them: ConfigurationError naming every problem now,
    not a traceback on the first tick; the near misses (`timezone` for `time_zone`) to warn about."""
    from shared.settings import Settings

    return Settings.from_environ(os.environ).warnings


class _StopSignals:
    """SIGTERM and SIGINT stop the host, once.

    The first one raises KeyboardInterrupt in the main thread, wherever it is; every later one is a
    no-op, so that it cannot interrupt the cleanups. `make run` forwards the signal it gets, and a
    Ctrl-C reaches make and the host alike, so the host is often told twice, a few milliseconds apart.
    (The handler stays installed: switching to SIG_IGN from inside it would make Python report a
    signal already pending as "ignored due to race condition".)
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received = False
        self.previous = {number: signal.signal(number, self._stop) for number in self.SIGNALS}

    def _stop(self, number: int, frame: object) -> None:
        if not self.received:
            self.received = True
            raise KeyboardInterrupt

    def restore(self) -> None:
        """Put the previous handlers back, unless stopping was asked for: then stay deaf until exit."""
        if not self.received:
            for number, handler in self.previous.items():
                signal.signal(number, handler)


def _bind(port: int, functions) -> FunctionsHost:
    try:
        return FunctionsHost(port, functions)
    except OSError as error:
        other = 7181 if port != 7181 else 7291
        raise ValueError(
            f"port {port}: {error.strerror} (is `func start` running? "
            f"use `make run PORT={other}` or `python -m devhost --port {other}`)"
        ) from None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=7071, help="default 7071, as `func start`")
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    parser.add_argument("--demo", action="store_true", help="run the demo even if local.settings.json exists")
    parser.add_argument("--outbox", type=Path, default=ROOT / "outbox", help="where the demo's mails go")
    parser.add_argument(
        "--shutdown-in",
        type=_lead,
        metavar="SECONDS",
        help="demo: ws-demo shuts down at the first whole minute at least SECONDS after start, the "
        "second workspace a minute later in its own zone (default 180; the end-to-end tests use less)",
    )
    args = parser.parse_args(argv)
    if args.shutdown_in is not None and not (args.demo or not args.settings.exists()):
        parser.error(f"--shutdown-in applies to the demo only, and {args.settings} exists: add --demo")
    return args


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port number (1-65535), not {text!r}")
    return int(text)


def _lead(text: str) -> int:
    from .demo import lead_seconds

    try:
        return lead_seconds(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None


def _environment(args: argparse.Namespace, cleanups: list[Callable[[], None]]) -> Demo | None:
    """Set up App Settings (and the demo's stand-ins); return the demo, if that is what runs."""
    if args.demo or not args.settings.exists():
        from .demo import SHUTDOWN_LEAD, Demo

        lead = SHUTDOWN_LEAD if args.shutdown_in is None else args.shutdown_in
        demo = Demo(args.port, args.outbox, shutdown_in=lead)
        cleanups.append(demo.stop)
        os.environ.update(demo.start())
        return demo
    values = local_settings.load(args.settings)
    local_settings.apply(values)
    for warning in _checked_settings():  # broken settings stop the host here, in one line
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    storage = os.environ.get("AzureWebJobsStorage", "")
    if storage.replace(" ", "").lower() == "usedevelopmentstorage=true":
        from loopback import Azurite

        azurite = Azurite(port=10002)
        cleanups.append(azurite.cleanup)
        azurite.start()
    return None


def _announce(functions, timers: TimerScheduler, port: int) -> None:
    print("\nFunctions:", flush=True)
    upcoming = timers.next_runs()
    for function in functions:
        if function.kind == "httpTrigger":
            methods = ",".join(sorted(function.methods or {"any"}))
            print(f"  {function.name}: [{methods}] http://localhost:{port}/api/{function.route}")
        else:
            print(f"  {function.name}: timerTrigger, next run {upcoming[function.name].isoformat()}")


if __name__ == "__main__":
    sys.exit(main())
