"""A loopback TCP proxy a test can cut, to put a process out of reach of Redis without touching Redis, or hold
(what the upstream sends stays in the link: a replica that receives, and acknowledges, nothing more)."""

from __future__ import annotations

import contextlib
import socket
import threading

from scripts.embedded_redis import free_port


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.1)
        self._connections: list[socket.socket] = []
        self._held: list[tuple[socket.socket, bytes]] = []
        self._holding = False
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the timeout was for connecting: an idle connection is not a dead one
            with self._lock:
                self._connections += [client, upstream]
            for source, target, holdable in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(source, target, holdable), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, holdable: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                with self._lock:
                    if holdable and self._holding:
                        self._held.append((target, chunk))
                        continue
                target.sendall(chunk)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        """Keep what the upstream sends from here on in the link; the connections stay open."""
        with self._lock:
            self._holding = True

    def release(self) -> None:
        """Deliver what was held, in order, and stop holding."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
            for target, chunk in held:
                with contextlib.suppress(OSError):
                    target.sendall(chunk)

    def cut(self) -> None:
        """Drop every connection (and what was held: it never arrives) and refuse new ones."""
        self._cut.set()
        with self._lock:
            self._held = []
            connections, self._connections = self._connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._closed.set()
        self._server.close()
