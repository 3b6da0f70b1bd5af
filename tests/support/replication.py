"""A Redis primary with one replica, linked through a proxy the test can hold: asynchronous replication made
visible, without Sentinel (the failover tests use `scripts/embedded_sentinel.py`).

    with PrimaryWithReplica(tmp_path) as pair:
        pair.primary                 # a client of the primary (str replies)
        pair.hold()                  # the replica stays connected but receives nothing more (nor acknowledges)
        pair.release()               # it receives what was held, in order, and catches up
        new = pair.fail_over()       # kill -9 the primary, drop what it had not replicated, promote the replica

Holding is done in the link, not by stopping the replica: bytes a stopped process has not read still reach it
from its socket buffer, so nothing would be lost; bytes the link never forwarded are.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

from redis import Redis

from scripts.embedded_redis import EmbeddedRedis, find_redis_server, free_port
from tests.support.stack import wait_until
from tests.support.tcp_proxy import TcpProxy


class PrimaryWithReplica:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.primary_server = EmbeddedRedis(workdir=str(workdir / "primary"))
        (workdir / "primary").mkdir(parents=True, exist_ok=True)
        (workdir / "replica").mkdir(parents=True, exist_ok=True)
        self.replica_port = free_port()
        self.link: TcpProxy | None = None
        self.replica_process: subprocess.Popen[bytes] | None = None
        self.clients: list[Redis] = []

    def client(self, port: int) -> Redis:
        client = Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10)
        self.clients.append(client)
        return client

    def start(self) -> PrimaryWithReplica:
        self.primary_server.start()
        self.primary = self.client(self.primary_server.port)
        self.primary.config_set("repl-diskless-sync-delay", 0)  # the first sync starts at once, not after 5 s
        self.link = TcpProxy(self.primary_server.port)
        self.replica_process = subprocess.Popen(
            [
                find_redis_server(),
                *("--bind", "127.0.0.1", "--port", str(self.replica_port), "--save", "", "--appendonly", "no"),
                *("--dir", str(self.workdir / "replica"), "--repl-diskless-load", "disabled"),
                *("--replicaof", "127.0.0.1", str(self.link.port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.replica = self.client(self.replica_port)
        wait_until(self._linked, 30, interval=0.05, message="the replica linked and online")
        return self

    def _linked(self) -> bool:
        with contextlib.suppress(Exception):
            replicas = [v for k, v in self.primary.info("replication").items() if k.startswith("slave")]
            return self.replica.info("replication").get("master_link_status") == "up" and any(
                isinstance(r, dict) and r.get("state") == "online" for r in replicas
            )
        return False

    def hold(self) -> None:
        assert self.link is not None
        self.link.hold()

    def release(self) -> None:
        assert self.link is not None
        self.link.release()

    def fail_over(self) -> Redis:
        """kill -9 the primary; what it had not replicated is lost; the replica becomes the primary."""
        process = self.primary_server.process
        assert process is not None and self.link is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.primary_server.process = None
        self.link.cut()
        self.replica.execute_command("REPLICAOF", "NO", "ONE")
        wait_until(lambda: self.replica.info("replication").get("role") == "master", 10, message="promoted")
        return self.replica

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.link is not None:
            self.link.close()
        if self.replica_process is not None and self.replica_process.poll() is None:
            self.replica_process.terminate()
            try:
                self.replica_process.wait(5)
            except subprocess.TimeoutExpired:
                self.replica_process.kill()
        self.primary_server.stop()

    def __enter__(self) -> PrimaryWithReplica:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
