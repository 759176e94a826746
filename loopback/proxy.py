"""A tiny HTTP CONNECT proxy on 127.0.0.1 that tunnels *every* CONNECT to one local address.

requests (azureml-core, MSAL) and urllib (sendgrid) honour ``HTTPS_PROXY``; pointing it here makes
them open a tunnel "to login.microsoftonline.com:443" (or any other host) that really ends at the
loopback TLS server, while they still verify the certificate against the real host name. That is
the whole trick that lets the unmodified SDKs talk to the stand-ins. Anything that is not CONNECT
(e.g. a plain-HTTP request through the proxy) gets 405; if the target cannot be reached the client
gets 502. ``connects`` lists every ``host:port`` asked for, in order, for debugging (one per tunnel,
i.e. per client connection). Both sockets of a tunnel have TCP_NODELAY set, as a real proxy does, so
the tunnel adds no Nagle delay to small requests and responses.
"""

from __future__ import annotations

import socket
import socketserver
import threading

from .background import BackgroundServing, no_delay

_BUF = 65536


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(_BUF)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        no_delay(client)  # already set on accept; said again here, where the tunnel is built
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > 65536:
                return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            client.sendall(
                b"HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
            return
        self.server.note_connect(parts[1])
        try:
            upstream = socket.create_connection(self.server.target, timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        no_delay(upstream)
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            client.settimeout(None)
            upstream.settimeout(None)
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


class ConnectProxy(BackgroundServing, socketserver.ThreadingTCPServer):
    """CONNECT-only proxy on 127.0.0.1:<free port> forwarding every tunnel to ``target``."""

    thread_name = "standins-proxy"

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target = target
        self.port: int = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connects: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def note_connect(self, authority: str) -> None:
        with self._lock:
            self.connects.append(authority)

    def clear_connects(self) -> None:
        with self._lock:
            self.connects.clear()
