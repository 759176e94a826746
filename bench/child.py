"""One measured run in a fresh process, as a Functions worker would do it. Prints one JSON line.

    python -m bench.child sweep|mail|load

The App Settings (and the proxy variables that lead to the stand-ins) come from the environment.
"""

from __future__ import annotations

import json
import resource
import sys
import time

SDK_PREFIXES = ("azureml", "sendgrid", "python_http_client", "azure.cosmosdb", "azure.common", "msal")


def main(what: str) -> dict:
    started = time.perf_counter()
    import azure.functions  # noqa: F401 - the worker has it loaded before any function
    from azure.functions.timer import TimerRequest

    functions_loaded = time.perf_counter()
    if what == "load":
        import CancelShutDown  # noqa: F401

        loaded = time.perf_counter()
        sdks = sorted({m.split(".")[0] for m in sys.modules if m.startswith(SDK_PREFIXES)})
        return {"ms": (loaded - functions_loaded) * 1000, "sdks": sdks, "total_ms": (loaded - started) * 1000}
    module = {"sweep": "ComputeShutdown", "mail": "MailSender"}[what]
    function = __import__(module)
    run_started = time.perf_counter()
    function.main(TimerRequest())
    wall = time.perf_counter() - run_started
    return {"wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
