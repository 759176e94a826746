"""start()/stop()/`with` for a socketserver served from a daemon thread, shared by every loopback server."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundServing:
    """Mix into a socketserver.BaseServer subclass. `thread_name` names the serving thread."""

    thread_name = "standins"
    _thread: threading.Thread | None = None

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
