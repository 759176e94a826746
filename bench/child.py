"""One measured run in a fresh process, as a Functions worker would do it. Prints one JSON line.

    python -m bench.child sweep|mail|idle|load|load-timers|load-adapter

The App Settings (and the proxy variables that lead to the stand-ins) come from the environment; the
compute adapter is the one `compute_api` chooses. The app runs unchanged, on the real clock: the
parent chooses `shutdown_time` so that "now" is inside the window the case needs (or, for `idle`,
outside every window).

One bench-only knob: BENCH_ARM_WRITES_PER_SECOND sets the refill rate of the ARM client's own write
bucket (shared.arm_pacing mirrors ARM's 10 writes/s), so that it matches a stand-in bucket whose refill
the bench has sped up (see the bucket case in bench/__main__.py). Capacity and headroom stay as shipped.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

SDK_PREFIXES = ("azureml", "sendgrid", "python_http_client", "azure.cosmosdb", "azure.common", "msal")
WARM_TICKS = 200  # `idle`: ticks measured after the first one, in the same process
WRITE_RATE = "BENCH_ARM_WRITES_PER_SECOND"


def main(what: str) -> dict:
    started = time.perf_counter()
    import azure.functions  # noqa: F401 - the worker has it loaded before any function
    from azure.functions.timer import TimerRequest

    functions_loaded = time.perf_counter()
    if what in ("load", "load-timers", "load-adapter"):
        names = ["CancelShutDown"] if what == "load" else ["MailSender", "ComputeShutdown"]
        for name in names:
            __import__(name)
        if what == "load-adapter":  # what a sweep builds before its first remote call
            from shared import app

            app.bootstrap().workspace  # noqa: B018 - builds the adapter: imports its SDK, no remote call
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
    if os.environ.get(WRITE_RATE):
        _pace_arm_writes(float(os.environ[WRITE_RATE]))
    cpu_started, run_started = _cpu(), time.perf_counter()
    error = None
    try:
        function.main(TimerRequest())
    except Exception as failed:  # a failed run is a result too: the parent reports what got done
        error = f"{type(failed).__name__}: {str(failed)[:300]}"
    wall = time.perf_counter() - run_started
    return {"wall": wall, "cpu": _cpu() - cpu_started, "rss_mb": _rss_mb(), "error": error}


def _pace_arm_writes(per_second: float) -> None:
    """The ARM client's bucket refills at `per_second` instead of ARM's 10/s (read when it is built)."""
    from shared import arm_client

    arm_client.ARM_WRITES_PER_SECOND = per_second


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


def _cpu() -> float:
    """CPU seconds (user + system) of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux carries it over fork and exec, so a child
    reports at least its parent's RSS at the time it was started (the bench, with the stand-ins' log)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
