"""One measured run in a fresh process, as a Functions worker would do it. Prints one JSON line.

    python -m bench.child sweep|mail|idle|load|load-timers

The App Settings (and the proxy variables that lead to the stand-ins) come from the environment. The
app runs unchanged, on the real clock: the parent chooses `shutdown_time` so that "now" is inside the
window the case needs (or, for `idle`, outside every window).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

SDK_PREFIXES = ("azureml", "sendgrid", "python_http_client", "azure.cosmosdb", "azure.common", "msal")
WARM_TICKS = 200  # `idle`: ticks measured after the first one, in the same process


def main(what: str) -> dict:
    started = time.perf_counter()
    import azure.functions  # noqa: F401 - the worker has it loaded before any function
    from azure.functions.timer import TimerRequest

    functions_loaded = time.perf_counter()
    if what in ("load", "load-timers"):
        names = ["CancelShutDown"] if what == "load" else ["MailSender", "ComputeShutdown"]
        for name in names:
            __import__(name)
        loaded = time.perf_counter()
        return {
            "ms": (loaded - functions_loaded) * 1000,
            "sdks": _sdks(),
            "total_ms": (loaded - started) * 1000,
        }
    if what == "idle":
        return _idle(TimerRequest)
    module = {"sweep": "ComputeShutdown", "mail": "MailSender"}[what]
    function = __import__(module)
    run_started = time.perf_counter()
    function.main(TimerRequest())
    wall = time.perf_counter() - run_started
    return {"wall": wall, "rss_mb": _rss_mb()}


def _idle(timer_request) -> dict:
    """A tick with nothing due: both timers fire (every five minutes), as the host fires them."""
    import ComputeShutdown
    import MailSender

    def tick() -> float:
        begun = time.perf_counter()
        MailSender.main(timer_request())
        ComputeShutdown.main(timer_request())
        return time.perf_counter() - begun

    first = tick()
    warm = [tick() for _ in range(WARM_TICKS)]
    return {"first": first, "warm_p50": statistics.median(warm), "sdks": _sdks(), "rss_mb": _rss_mb()}


def _sdks() -> list[str]:
    return sorted({prefix for m in sys.modules for prefix in SDK_PREFIXES if m.startswith(prefix)})


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
