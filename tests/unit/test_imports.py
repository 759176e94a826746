"""CancelShutDown must load fast: no Azure ML or SendGrid SDK, and no settings read, at import."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("azureml", "sendgrid", "python_http_client", "azure.cosmosdb", "msal", "requests")


def loaded_after(code: str) -> list[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loading_cancel_shutdown_imports_no_sdk_and_reads_no_settings():
    modules = loaded_after("import CancelShutDown")  # an empty environment: nothing may be read yet
    assert "CancelShutDown" in modules and "shared.app" in modules
    assert [m for m in modules if m.startswith(HEAVY)] == []


def test_loading_the_timer_functions_imports_no_sdk_either():
    modules = loaded_after("import MailSender, ComputeShutdown")
    assert [m for m in modules if m.startswith(HEAVY)] == []
