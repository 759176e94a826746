"""The HTTP side of the dev host, at the URLs Core Tools uses.

- `/api/<route>`: HTTP-triggered functions (route defaults to the function name, matched without regard
  to case as the host does; `methods` from function.json respected). `authLevel` is not enforced,
  exactly as under `func start`, which skips keys locally.
- `POST /admin/functions/<Name>`: run a timer function now (answers 202; the run goes on in the background).
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from . import invoke
from .functions import Function

log = logging.getLogger("Host.Http")
MAX_BODY = 10 * 1024 * 1024


class FunctionsHost(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, functions: list[Function]):
        self.functions = {f.name.lower(): f for f in functions}
        self.routes = {f.route.lower(): f for f in functions if f.kind == "httpTrigger"}
        super().__init__(("127.0.0.1", port), _Handler)

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="devhost-http", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: FunctionsHost
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/admin/functions/"):
            self._admin(path.removeprefix("/admin/functions/"))
        elif path.lower().startswith("/api/"):
            self._http_function(path[len("/api/") :])
        elif path == "/":
            self._send(200, b"Azure Functions dev host is running. Functions: " + self._names().encode())
        else:
            self._send(404, b"Not found")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _admin(self, name: str) -> None:
        function = self.server.functions.get(name.lower())
        self._read_body()
        if self.command != "POST" or function is None:
            self._send(404, f"No function {name!r}; functions: {self._names()}".encode())
        elif function.kind != "timerTrigger":
            self._send(400, b"Only non-HTTP functions can be run through the admin API")
        else:
            threading.Thread(
                target=invoke.run_timer,
                args=(function, "This function was programmatically called via the host APIs."),
                daemon=True,
            ).start()
            self._send(202, b"")

    def _http_function(self, route: str) -> None:
        function = self.server.routes.get(route.rstrip("/").lower())
        body = self._read_body()
        if function is None or (function.methods and self.command not in function.methods):
            self._send(404, b"Not found")
            return
        url = f"http://{self.headers.get('Host', 'localhost')}{self.path}"
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        request = func.HttpRequest(self.command, url, headers=dict(self.headers), params=params, body=body)
        response = invoke.run_http(function, request)
        payload = response.get_body() or b""
        headers = dict(response.headers)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
        self._send(response.status_code, payload, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = headers or {"Content-Type": "text/plain; charset=utf-8"}
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _names(self) -> str:
        return ", ".join(f.name for f in self.server.functions.values())

    # The request line holds the link token and maybe a function key: log method, path and status only.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s -> %s", self.command, self._path_only(), code)

    def log_error(self, format: str, *args: object) -> None:
        # The base class's message for a malformed request quotes the whole request line: leave it out.
        log.warning("%s %s -> %s", self.command or "-", self._path_only(), args[0] if args else "error")

    def _path_only(self) -> str:
        return urlsplit(getattr(self, "path", "") or "").path or "-"
