"""start()/stop()/`with` for a socketserver served from a daemon thread, shared by every loopback server.

Every such server also behaves like a real one where it is cheap to: a normal listen backlog (128, not
socketserver's 5, which drops SYNs when 64 clients connect at once) and TCP_NODELAY on each accepted
socket (no Nagle delay between a small response's header and body). `accepted` counts connections.
"""

from __future__ import annotations

import socket
import threading
from typing import Self


def no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY, as every real HTTP server and client sets it; quietly skipped on non-TCP sockets."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class BackgroundServing:
    """Mix into a socketserver.TCPServer subclass (first in the bases). `thread_name` names the
    serving thread."""

    thread_name = "standins"
    request_queue_size = 128  # the listen backlog
    _thread: threading.Thread | None = None
    _accepted = 0
    _accepted_lock = threading.Lock()

    def get_request(self):
        conn, address = super().get_request()  # type: ignore[misc]
        no_delay(conn)
        with self._accepted_lock:
            self._accepted += 1
        return conn, address

    @property
    def accepted(self) -> int:
        """Connections accepted since start (or since `reset_accepted`)."""
        return self._accepted

    def reset_accepted(self) -> None:
        with self._accepted_lock:
            self._accepted = 0

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)  # type: ignore[attr-defined]
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()  # type: ignore[attr-defined]
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()  # type: ignore[attr-defined]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HeadersAndBody:
    """Case-insensitive header lookup and JSON body, for dataclasses with `headers` and `body`."""

    headers: dict[str, str]
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), default)

    def json(self):
        import json

        return json.loads(self.body) if self.body else None
