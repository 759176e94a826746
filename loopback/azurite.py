"""Azurite (Table service only) as a child process the tests can start, stop and restart.

The app keeps its state in Azure Table storage through ``azure-cosmosdb-table``; Azurite speaks the
same REST protocol on 127.0.0.1, so the real SDK can be exercised. Data lives in memory only
(``--inMemoryPersistence``), so a restart starts empty. :meth:`Azurite.stop` followed by
:meth:`Azurite.start` keeps the port, which is how tests simulate a storage outage and recovery.

The binary is ``node_modules/.bin/azurite-table`` of this repository (``npm ci`` installs it, pinned in
package-lock.json); npx is deliberately not used (it may download). The process runs in its own
session/process group and is stopped by its PID: SIGTERM, then SIGKILL after a timeout.

``Azurite(oauth=True)`` serves HTTPS with a certificate for 127.0.0.1 from its own throw-away CA
(:attr:`Azurite.ca_file`, for ``REQUESTS_CA_BUNDLE``) and accepts bearer tokens (``--oauth basic``):
Azurite decodes the JWT and checks its lifetime, issuer (``https://sts.windows.net/...``) and audience
(``https://storage.azure.com``), but not its signature or any role. Shared Key works there too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The well-known development storage account every Azurite accepts.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class AzuriteNotInstalled(RuntimeError):
    pass


class Azurite:
    """``azurite-table`` on 127.0.0.1:<port>. Use :meth:`start`/:meth:`stop` or ``with Azurite() as az:``."""

    def __init__(
        self,
        port: int | None = None,
        binary: str | Path | None = None,
        skip_api_version_check=False,
        oauth: bool = False,
    ):
        self.binary = Path(binary) if binary else REPO_ROOT / "node_modules" / ".bin" / "azurite-table"
        self.port = port or free_port()
        self.skip_api_version_check = skip_api_version_check
        self.oauth = oauth
        self.workdir = Path(tempfile.mkdtemp(prefix="standins-azurite-"))  # cwd + console log
        self.log_file = self.workdir / "azurite.log"
        self.process: subprocess.Popen | None = None
        self.ca_file: str | None = None  # with oauth: the CA that signed Azurite's certificate
        if oauth:
            self._make_certificate()
        atexit.register(self.stop)  # last resort if the owner never calls stop() (e.g. a crashed script)

    def _make_certificate(self) -> None:
        import trustme  # dev dependency, only needed for HTTPS

        ca = trustme.CA(organization_name="aml-autoshutdown loopback Azurite")
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(self.workdir / "azurite-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        leaf.cert_chain_pems[0].write_to_path(str(self.workdir / "azurite-cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.workdir / "azurite-key.pem"))

    @property
    def scheme(self) -> str:
        return "https" if self.oauth else "http"

    @property
    def table_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start (or restart, on the same port) and wait until the port accepts connections."""
        if self.running:
            return self
        if not self.binary.exists():
            raise AzuriteNotInstalled(
                f"{self.binary} not found. Run `npm ci` (or `make node`) in {REPO_ROOT} to install "
                "the pinned Azurite; Node.js >= 20 is required."
            )
        if shutil.which("node") is None:
            raise AzuriteNotInstalled("`node` is not on PATH; Azurite needs Node.js >= 20.")
        args = [
            str(self.binary),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.port),
            "--inMemoryPersistence",
            "--disableTelemetry",  # (--location is refused with in-memory mode)
        ]
        if self.skip_api_version_check:
            args.append("--skipApiVersionCheck")
        if self.oauth:  # OAuth needs HTTPS
            args += ["--oauth", "basic", "--cert", str(self.workdir / "azurite-cert.pem"),
                     "--key", str(self.workdir / "azurite-key.pem")]  # fmt: skip
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: a Ctrl-C in the terminal does not hit it
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"Azurite did not listen on {self.port} within {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process we started (by PID / its own process group); no-op if not running."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # pgid == pid: start_new_session made it a group leader
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout)
        # Wait until the port is really closed, so "stopped" means "connection refused" right away.
        deadline = time.monotonic() + timeout
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        """Stop and delete the work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
