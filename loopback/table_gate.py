"""A plain-HTTP gate in front of Azurite that can answer with injected faults (500, 503, latency).

Azurite cannot be told to fail on request, but Table Storage can: the gate forwards every request
unchanged to Azurite (Shared Key signatures cover the path, not the host, so they stay valid) unless a
fault for service ``"table"`` in the shared :class:`Traffic` answers first. Point a connection string's
``TableEndpoint`` at :attr:`TableGate.endpoint` instead of Azurite's.
"""

from __future__ import annotations

import http.client
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .background import BackgroundServing
from .traffic import Record, Traffic

SERVICE = "table"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class TableGate(BackgroundServing, ThreadingHTTPServer):
    thread_name = "table-gate"
    daemon_threads = True

    def __init__(self, azurite_port: int, traffic: Traffic | None = None):
        self.azurite_port = azurite_port
        self.traffic = traffic if traffic is not None else Traffic()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/devstoreaccount1"

    def connection_string(self, azurite_connection_string: str) -> str:
        parts = [p for p in azurite_connection_string.split(";") if p and not p.startswith("TableEndpoint=")]
        return ";".join([*parts, f"TableEndpoint={self.endpoint}"]) + ";"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        gate: TableGate = self.server  # type: ignore[assignment]
        start = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        delay, fault = gate.traffic.take_faults(SERVICE, self.command, path)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.status is not None:
            status, headers, payload = fault.status, dict(fault.headers or {}), _fault_body(fault)
        else:
            status, headers, payload = self._upstream(gate, body)
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        query = dict(parse_qsl(urlsplit(self.path).query))
        host = f"127.0.0.1:{gate.port}"
        end = time.monotonic()
        record = Record(
            SERVICE, self.command, host, path, query, dict(self.headers), body, status, start, end
        )
        record.fault = fault is not None
        gate.traffic.record(record)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = do_HEAD = _forward

    def _upstream(self, gate: TableGate, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", gate.azurite_port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except OSError:
            return 502, {}, b""
        finally:
            connection.close()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the Traffic log is the record


def _fault_body(fault) -> bytes:
    if fault.body is None:
        return b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"Injected fault."}}}'
    return fault.body if isinstance(fault.body, bytes) else str(fault.body).encode()
