"""End-to-end fixtures: the dev host (`python -m devhost --demo`) as a real process, and a real browser.

The dev host starts its own Azurite and stand-ins; the tests talk to it only over HTTP and its outbox,
exactly as a person following the README would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from loopback.azurite import free_port
from loopback.stack import environ_without_routing

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class PrintedWorkspace:
    """One workspace of the demo, as its printed steps describe it: its `aml_workspaces` entry and the
    instant its `shutdown_time` means."""

    name: str
    resource_group: str
    subscription_id: str
    zone: ZoneInfo
    shutdown_time: str  # HH:MM in `zone`, as in the setting
    shutdown_at: datetime  # UTC

    @property
    def label(self) -> str:
        """How summary lines name it: `subscription/resource group/workspace`."""
        return f"{self.subscription_id}/{self.resource_group}/{self.name}"


def mail_group(body: str, workspace: str) -> str:
    """The part of a mail grouped by workspace (HTML or plain text) about `workspace`: from its heading
    to the next workspace's. A mail about one workspace has no headings: then the whole body."""
    heads = list(re.finditer(r"<h2[^>]*>([^<]+)</h2>|^== (\S+) \(resource group", body, re.MULTILINE))
    for index, head in enumerate(heads):
        if workspace in head.groups():
            end = heads[index + 1].start() if index + 1 < len(heads) else len(body)
            return body[head.start() : end]
    if heads:
        raise AssertionError(f"no group for workspace {workspace} in the mail")
    return body


class DevHost:
    """`python -m devhost --demo`; `shutdown_in` (seconds) brings the demo's shutdown closer than its
    three minutes, `env` adds variables (e.g. TZ, which the demo takes as this machine's zone)."""

    def __init__(
        self, outbox: Path, port: int | None = None, shutdown_in: int | None = None, env: dict | None = None
    ):
        self.port = port or free_port()
        self.outbox = outbox
        self.lines: list[str] = []
        environ = {**environ_without_routing(os.environ), **(env or {})}  # the demo has its own stand-ins
        command = [sys.executable, "-m", "devhost", "--demo", "--port", str(self.port), "--outbox", str(outbox)]  # fmt: skip
        if shutdown_in is not None:
            command += ["--shutdown-in", str(shutdown_in)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for_line("Host ready", timeout=60)

    @property
    def shutdown_at(self) -> datetime:
        """The demo's shutdown instant, from the line the demo prints for it (ISO 8601, in UTC)."""
        line = self.wait_for_line("  Shutdown: ")
        return datetime.fromisoformat(re.search(r"\((\S+)\)$", line).group(1))

    @property
    def machine_zone(self) -> ZoneInfo:
        """The zone the demo took as this machine's (TZ, else /etc/timezone, else UTC)."""
        return ZoneInfo(re.search(r"times on this machine's clock, (\S+)\)", self.output).group(1))

    @property
    def workspaces(self) -> list[PrintedWorkspace]:
        """The demo's workspaces in the order printed (ws-demo first): each `aml_workspaces` entry (printed
        as JSON) with its `Shutdown:` line (ISO 8601 instant in UTC at its end)."""
        self.wait_for_line("Try it")
        entries = [json.loads(e) for e in re.findall(r'\{"subscription_id": [^}]*\}', self.output)]
        shutdowns = dict(
            re.findall(r"Workspace (\S+), resource group \S+ \(AzureML stand-in\).*\n\s+Shutdown: .*\((\S+)\)$",
                       self.output, re.MULTILINE)
        )  # fmt: skip
        return [
            PrintedWorkspace(
                e["workspace"],
                e["resource_group"],
                e["subscription_id"],
                ZoneInfo(e["time_zone"]),
                e["shutdown_time"],
                datetime.fromisoformat(shutdowns[e["workspace"]]),
            )
            for e in entries
        ]

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout: float = 30, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"dev host never printed {text!r}; output:\n{self.output}")

    def request(
        self, method: str, url: str, body: bytes | None = None, headers=None
    ) -> tuple[int, dict, str]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def run_timer(self, name: str) -> int:
        """POST /admin/functions/<name> with {} as under `func start`; wait until the run finished."""
        mark = len(self.lines)
        status, _, _ = self.request(
            "POST", f"{self.base}/admin/functions/{name}", b"{}", {"Content-Type": "application/json"}
        )
        if status == 202:
            self.wait_for_line(f"Executed 'Functions.{name}'", after=mark)
        return status

    def newest_mail(self, to: str) -> tuple[Path, dict]:
        (newest,) = sorted(self.outbox.glob(f"*-{to}.json"))[-1:]
        return newest.with_suffix(".html"), json.loads(newest.read_text(encoding="utf-8"))

    def link(self, to: str, instance: str, workspace: str) -> str:
        """The link of `instance` of `workspace` in the newest mail to `to` (its plain-text part)."""
        _, mail = self.newest_mail(to)
        text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
        group = mail_group(text, workspace)
        return re.search(rf"\* {instance} .*\n  Keep it running [^:]+: (\S+)", group).group(1)

    def stop(self) -> int:
        self._hand_over_for_the_secrets_scan()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # like Ctrl-C: the host cleans up after itself
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def _hand_over_for_the_secrets_scan(self) -> None:
        from tests import conftest

        conftest.CAPTURED.append(self.output)
        for mail in self.outbox.glob("*.json"):
            conftest.TOKENS.update(re.findall(r"token=([A-Za-z0-9_.-]+)", mail.read_text(encoding="utf-8")))


def chromium_missing() -> str | None:
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    if missing:
        return (
            f"browser tests skipped: {' and '.join(missing)} not installed "
            "(Debian: apt-get install chromium chromium-driver; .ci/run does this when run as root)"
        )
    return None
