"""One HTTPS server on 127.0.0.1 that plays every cloud host at once.

Clients reach it through :mod:`loopback.proxy` (every CONNECT is tunnelled here), so the TLS
handshake carries the real host name (SNI) and each request its real ``Host`` header; the server
dispatches on that header to the stand-in owning the host. Every request is recorded in the shared
:class:`~loopback.traffic.Traffic` log, after faults and latency have been applied. Hosts no
stand-in owns get a JSON 404 (and are logged as service ``"unknown"``); a stand-in that raises gets a
500 with the traceback, so a bug in a stand-in shows up in the test instead of hanging it.

Opening a connection can be given a price (:attr:`StandInServer.connection_cost`, seconds slept
before the TLS handshake of each new connection, in that connection's thread), so that a benchmark
sees what a client that does not reuse its connections pays. Without an SSL context the same server
speaks plain HTTP (the managed-identity endpoint, :mod:`loopback.identity`).
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from .background import BackgroundServing, HeadersAndBody
from .traffic import Fault, Record, Traffic


@dataclass
class Request(HeadersAndBody):
    """What a stand-in gets to look at."""

    service: str
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """What a stand-in answers. ``body``: dict/list -> JSON, str -> UTF-8 text, bytes as is."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return data, headers


class StandIn(Protocol):
    """What the server needs from a stand-in."""

    def service_for_host(self, host: str) -> str | None:
        """The service name if this stand-in owns ``host`` (lower case, no port), else None."""

    def handle(self, request: Request) -> Response: ...

    def fault_response(self, service: str, status: int) -> Response:
        """Default (realistic) error answer for an injected fault that brings no body."""


def _read_chunked(rfile) -> bytes:
    data = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        data += rfile.read(size)
        rfile.readline()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services
    server_version = "standins"
    timeout = 30  # idle keep-alive connections are closed after this
    server: StandInServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # quiet; the Traffic log is the record
        pass

    def _dispatch(self) -> None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(length)) if length else b""
        start = time.monotonic()
        host = (self.headers.get("Host") or "").split(":")[0].lower().rstrip(".")
        url = urlsplit(self.path)
        path = url.path
        if self.path.startswith(("http://", "https://")):  # absolute-form request target
            host = host or (url.hostname or "")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        service, standin = self.server.route(host)
        request = Request(service, self.command, host, path, query, headers, body)

        delay, fault = self.server.traffic.take_faults(service, self.command, path)
        if not self.server.network_latency:  # a host-local endpoint: no round trip to the cloud
            delay = max(0.0, delay - self.server.traffic.latency)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.drop:
            self._record(request, None, {}, b"", start, fault=True)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            if fault is not None:
                response = self._fault_response(standin, service, fault)
            elif standin is None:
                response = Response(
                    404,
                    {
                        "error": {
                            "code": "NoStandIn",
                            "message": f"No loopback stand-in serves host {host!r} "
                            f"({self.command} {path}). Add one or expect this call.",
                        }
                    },
                )
            else:
                response = standin.handle(request)
        except Exception:  # a broken stand-in must not kill the server
            tb = traceback.format_exc()
            print(f"[standins] {self.command} https://{host}{path} crashed:\n{tb}", file=sys.stderr)
            response = Response(500, {"error": {"code": "StandInCrashed", "message": tb}})
        data, headers = response.encoded()
        # Record *before* answering: once the client has its response, the log already shows it.
        self._record(request, response.status, headers, data, start, fault=fault is not None)
        self.send_response(response.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _fault_response(self, standin: StandIn | None, service: str, fault: Fault) -> Response:
        assert fault.status is not None
        if fault.body is None and standin is not None:
            base = standin.fault_response(service, fault.status)
        else:
            base = Response(fault.status, fault.body)
        base.status = fault.status
        base.headers = {**base.headers, **(fault.headers or {})}
        return base

    def _record(self, req: Request, status, resp_headers, resp_body, start, fault) -> None:
        self.server.traffic.record(
            Record(
                service=req.service,
                method=req.method,
                host=req.host,
                path=req.path,
                query=req.query,
                headers=req.headers,
                body=req.body,
                status=status,
                start=start,
                end=time.monotonic(),
                fault=fault,
                response_headers=dict(resp_headers),
                response_body=resp_body,
            )
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class StandInServer(BackgroundServing, ThreadingHTTPServer):
    """HTTPS on 127.0.0.1:<free port>; TLS is set up per connection in the worker thread.

    Use :meth:`start` / :meth:`stop` (or the context manager); :attr:`port` is the bound port.
    ``ssl_context=None`` serves plain HTTP. ``connection_cost``: seconds each new connection costs
    before its handshake (0 by default). ``network_latency=False`` exempts the server from
    :attr:`Traffic.latency` (injected faults' delays still apply). :attr:`accepted` counts connections.
    """

    thread_name = "standins-https"

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        standins: list[StandIn],
        traffic: Traffic,
        *,
        connection_cost: float = 0.0,
        network_latency: bool = True,
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ssl_context = ssl_context
        self.standins = list(standins)
        self.traffic = traffic
        self.connection_cost = connection_cost
        self.network_latency = network_latency
        self.port: int = self.server_address[1]
        self._thread: threading.Thread | None = None

    def route(self, host: str) -> tuple[str, StandIn | None]:
        for standin in self.standins:
            service = standin.service_for_host(host)
            if service:
                return service, standin
        return "unknown", None

    def finish_request(self, request, client_address) -> None:
        # The handshake happens here, in the per-connection thread, so a slow or broken client
        # cannot stall accept() for everybody else; so does the price of a new connection.
        if self.connection_cost > 0:
            time.sleep(self.connection_cost)
        if self.ssl_context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        request.settimeout(10)  # a client that never finishes the handshake must not pin a thread
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            print(f"[standins] TLS handshake from {client_address} failed: {exc}", file=sys.stderr)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            return  # client went away; normal with keep-alive and dropped-connection faults
        super().handle_error(request, client_address)
