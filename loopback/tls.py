"""Throw-away PKI for the loopback stand-ins.

The real SDKs refuse plain HTTP and pin well-known host names (``login.microsoftonline.com``,
``management.azure.com``, ``<region>.api.azureml.ms``, ``api.sendgrid.com``, ``prices.azure.com``).
Instead of patching them, we give them a CA they trust through ``REQUESTS_CA_BUNDLE`` /
``SSL_CERT_FILE`` and a server certificate for those names. Host names nobody planned for (telemetry, new SDK endpoints) get a
certificate issued on the fly from the SNI name, so the TLS handshake succeeds and the request shows
up in the request log as a clear 404 instead of an opaque handshake failure on the client side.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from pathlib import Path

import trustme

#: Names the main server certificate covers. The wildcard covers every ``<region>.api.azureml.ms``.
DEFAULT_HOSTS: tuple[str, ...] = (
    "login.microsoftonline.com",
    "management.azure.com",
    "*.api.azureml.ms",
    "api.sendgrid.com",
    "prices.azure.com",
    "localhost",
    "127.0.0.1",
)


def _covered(name: str, identities: tuple[str, ...]) -> bool:
    name = name.lower().rstrip(".")
    for ident in identities:
        if ident.startswith("*."):
            head, _, tail = name.partition(".")
            if head and tail == ident[2:]:
                return True
        elif name == ident:
            return True
    return False


class LoopbackCA:
    """A trustme CA, its PEM file on disk and server-side SSL contexts signed by it.

    ``ca_file`` is what clients must trust (``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``). Call
    :meth:`cleanup` (or use it as a context manager) to delete the temporary directory.
    """

    def __init__(self, hosts: tuple[str, ...] = DEFAULT_HOSTS, directory: str | Path | None = None):
        self.hosts = tuple(h.lower() for h in hosts)
        self._ca = trustme.CA(organization_name="aml-autoshutdown loopback stand-ins")
        self._owns_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="standins-ca-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = str(self.directory / "standins-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self._leaf = self._ca.issue_cert(*self.hosts)
        self._extra: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def _context_for(self, leaf: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """Server context with the main certificate; unknown SNI names get an on-the-fly certificate."""
        ctx = self._context_for(self._leaf)

        def on_sni(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if not server_name or _covered(server_name, self.hosts):
                return
            name = server_name.lower()
            with self._lock:
                if name not in self._extra:
                    self._extra[name] = self._context_for(self._ca.issue_cert(name))
                sslobj.context = self._extra[name]

        ctx.sni_callback = on_sni
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA (handy for direct checks in tests)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def cleanup(self) -> None:
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LoopbackCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
