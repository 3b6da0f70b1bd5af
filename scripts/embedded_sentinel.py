"""Start a throwaway Sentinel-managed Redis on free loopback ports: a primary, N replicas and 3 sentinels.

Real `redis-server` processes (the binary `scripts/embedded_redis.py` finds), each with a work dir and a log
file of its own under `workdir`, nothing saved to disk, timings short enough for tests (a dead primary is
noticed after `down_after_ms`, a failover retried after 2 × `failover_timeout_ms`). Used by the tests and
benchmarks that watch a failover.

    with EmbeddedSentinel(replicas=1, password="pw") as cluster:   # start(): everyone up and acquainted
        env = cluster.env()            # REDIS_URL / REDIS_SENTINELS / REDIS_MASTER_NAME (/ REDIS_SENTINEL_PASSWORD)
        cluster.sentinel_addresses     # [("127.0.0.1", port), ...] of the sentinels
        cluster.master_address()       # ("127.0.0.1", port) of the primary, as the sentinels report it
        old = cluster.kill_primary()   # SIGKILL of the current primary; returns its address
        new = cluster.wait_failover(timeout=30)  # every live sentinel names a new primary that answers as master
        cluster.node_client(new)       # a plain client on one data node (to see where writes landed)
        cluster.revive(old)            # the killed node comes back, as a replica of the new primary
        cluster.stop_sentinel(0)       # one sentinel down (doctor shows it unreachable); start_sentinel(0)
    # stop(): every process killed, the work dir removed (when this launcher made it)

With `tls=TlsFiles(cert, key, ca)` the data nodes speak only TLS (replication too) and `redis_url()` is
`rediss://`; the sentinels reach them over TLS and still answer clients in plain TCP on their own ports.

`start()` returns only when every replica is linked to the primary and every sentinel knows the primary, all
replicas and the other sentinels — a failover needs the sentinels to know each other to elect a leader.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from scripts.embedded_redis import RedisUnavailable, find_redis_server, free_port

HOST = "127.0.0.1"
Address = tuple[str, int]


class FailoverTimeout(RuntimeError):
    pass


@dataclass(frozen=True)
class TlsFiles:
    """The data nodes' certificate and key, and the CA that signed it (PEM files)."""

    cert_file: str
    key_file: str
    ca_file: str


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class _Process:
    """One `redis-server` (data node or sentinel) and how to start it again on the same port."""

    def __init__(self, name: str, port: int, argv: list[str]) -> None:
        self.name = name
        self.port = port
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> Address:
        return (HOST, self.port)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class EmbeddedSentinel:
    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = "fleet",
        password: str | None = None,
        sentinel_password: str | None = None,
        workdir: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        tls: TlsFiles | None = None,
    ) -> None:
        if sentinels < 1 or replicas < 0:
            raise ValueError("need at least one sentinel and zero or more replicas")
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.tls = tls
        self.quorum = sentinels // 2 + 1
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fleet-sentinel-"))
        self.nodes: list[_Process] = []
        self.sentinels: list[_Process] = []
        self._initial_primary_port = 0

    # --- what clients need -----------------------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def sentinels_setting(self) -> str:
        """The value for REDIS_SENTINELS."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    def redis_url(self, db: int = 0) -> str:
        """The value for REDIS_URL: in Sentinel mode it supplies the password and db (its host is not used)."""
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{HOST}:{self._initial_primary_port}/{db}"

    def env(self, db: int = 0) -> dict[str, str]:
        """Environment variables that point a fleet process at this cluster through the sentinels."""
        env = {
            "REDIS_URL": self.redis_url(db),
            "REDIS_SENTINELS": self.sentinels_setting,
            "REDIS_MASTER_NAME": self.master_name,
        }
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    # --- life cycle ------------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EmbeddedSentinel:
        binary = find_redis_server()
        ports = _free_ports(1 + self.replica_count + self.sentinel_count * (2 if self.tls else 1))
        self._initial_primary_port = ports[0]
        deadline = time.monotonic() + timeout
        try:
            primary = self._data_node(binary, "node0", ports[0], replica_of=None)
            self.nodes.append(primary)
            primary.spawn()
            self._wait(lambda: self._answers(primary.address), deadline, f"primary on port {primary.port}")
            for index, port in enumerate(ports[1 : 1 + self.replica_count], start=1):
                node = self._data_node(binary, f"node{index}", port, replica_of=primary.address)
                self.nodes.append(node)
                node.spawn()
            for node in self.nodes[1:]:
                self._wait(lambda node=node: self._linked(node.address), deadline, f"replica {node.name} linked")
            sentinel_ports = ports[1 + self.replica_count :]
            for index, port in enumerate(sentinel_ports[: self.sentinel_count]):
                tls_port = sentinel_ports[self.sentinel_count + index] if self.tls else 0
                sentinel = self._sentinel(binary, index, port, primary.address, tls_port)
                self.sentinels.append(sentinel)
                sentinel.spawn()
            for sentinel in self.sentinels:
                self._wait(
                    lambda sentinel=sentinel: self._acquainted(sentinel.address),
                    deadline,
                    f"sentinel {sentinel.name} knowing the primary, {self.replica_count} replica(s) and "
                    f"{self.sentinel_count - 1} other sentinel(s)",
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.kill(signal.SIGTERM)
        self.sentinels = []
        self.nodes = []
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedSentinel:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- asking the sentinels --------------------------------------------------------------------------------

    def sentinel_client(self, index: int = 0) -> Redis:
        return self._client(self.sentinels[index].address, sentinel=True)

    def master_address(self) -> Address:
        """The primary as the first live sentinel reports it."""
        errors: list[str] = []
        for name, found in self._named_by_each():
            if isinstance(found, tuple):
                return found
            errors.append(f"{name}: {found}")
        raise RedisUnavailable(f"no sentinel names a primary for {self.master_name!r}: {errors or 'none alive'}")

    def _addresses_named(self) -> set[Address]:
        """Every live sentinel's answer (("?", 0) for one that names none or does not answer)."""
        return {found if isinstance(found, tuple) else ("?", 0) for _name, found in self._named_by_each()}

    def _named_by_each(self) -> list[tuple[str, Address | str]]:
        """Each live sentinel's name and the primary it names, or why it named none."""
        answers: list[tuple[str, Address | str]] = []
        for index, sentinel in enumerate(self.sentinels):
            if not sentinel.alive:
                continue
            try:
                with self.sentinel_client(index) as client:
                    found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            except RedisError as error:
                answers.append((sentinel.name, str(error)))
                continue
            answers.append((sentinel.name, (str(found[0]), int(found[1])) if found else "names no primary"))
        return answers

    # --- faults ----------------------------------------------------------------------------------------------

    def node_at(self, address: Address) -> _Process:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(f"no data node at {address[0]}:{address[1]}")

    def kill_primary(self) -> Address:
        """SIGKILL the process the sentinels currently name as primary; returns its address."""
        address = self.master_address()
        self.node_at(address).kill(signal.SIGKILL)
        return address

    def wait_failover(self, timeout: float = 30.0, old: Address | None = None) -> Address:
        """Wait until every live sentinel names the same primary, other than `old` (by default the primary
        named when this was called, or the last one killed), and that node answers ROLE as master."""
        if old is None:
            old = self._last_killed() or self.master_address()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = self._addresses_named()
            if len(named) == 1:
                (address,) = named
                if address != old and address[1] and self._role(address) == "master":
                    return address
            time.sleep(0.1)
        raise FailoverTimeout(
            f"no failover away from {old[0]}:{old[1]} within {timeout:g}s (sentinels name {sorted(named)}; "
            f"logs in {self.workdir})"
        )

    def revive(self, address: Address, timeout: float = 20.0) -> None:
        """Start a killed data node again on its port, as a replica of the current primary (never as an empty
        primary); the sentinels take it back as a replica."""
        node = self.node_at(address)
        if node.alive:
            return
        primary = self.master_address()
        node.argv = [*_without_replicaof(node.argv), "--replicaof", primary[0], str(primary[1])]
        node.spawn()
        deadline = time.monotonic() + timeout
        self._wait(lambda: self._linked(node.address), deadline, f"revived {node.name} linked")
        self._wait(lambda: self._replica_seen(node.address), deadline, f"sentinels seeing {node.name} as a replica")

    def stop_sentinel(self, index: int) -> None:
        self.sentinels[index].kill(signal.SIGKILL)

    def start_sentinel(self, index: int, timeout: float = 20.0) -> None:
        sentinel = self.sentinels[index]
        if not sentinel.alive:
            sentinel.spawn()
        self._wait(lambda: self._answers(sentinel.address, sentinel=True), time.monotonic() + timeout, sentinel.name)

    def _last_killed(self) -> Address | None:
        dead = [node.address for node in self.nodes if not node.alive]
        return dead[-1] if dead else None

    # --- building the processes ------------------------------------------------------------------------------

    def _data_node(self, binary: str, name: str, port: int, replica_of: Address | None) -> _Process:
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(self.workdir / f"{name}.log"),
            "--maxclients",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
        ]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if self.tls:
            argv[argv.index("--port") + 1] = "0"  # TLS only
            argv += ["--tls-port", str(port), "--tls-replication", "yes", "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", self.tls.cert_file, "--tls-key-file", self.tls.key_file]
            argv += ["--tls-ca-cert-file", self.tls.ca_file]
        if replica_of:
            argv += ["--replicaof", replica_of[0], str(replica_of[1])]
        return _Process(name, port, argv)

    def _sentinel(self, binary: str, index: int, port: int, primary: Address, tls_port: int = 0) -> _Process:
        name = f"sentinel{index}"
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {HOST}",
            f"port {port}",
            f'dir "{directory}"',
            f'logfile "{self.workdir / (name + ".log")}"',
            f"sentinel monitor {self.master_name} {primary[0]} {primary[1]} {self.quorum}",
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        if self.tls:
            # TLS towards the data nodes and the other sentinels (on their TLS port, which they announce); the
            # plain port stays open for clients.
            lines += [
                f"tls-port {tls_port}",
                "tls-replication yes",
                "tls-auth-clients no",
                f'tls-cert-file "{self.tls.cert_file}"',
                f'tls-key-file "{self.tls.key_file}"',
                f'tls-ca-cert-file "{self.tls.ca_file}"',
            ]
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        config = directory / "sentinel.conf"  # a sentinel rewrites its own config file: it must be writable
        config.write_text("\n".join(lines) + "\n")
        return _Process(name, port, [binary, str(config), "--sentinel"])

    # --- probes ----------------------------------------------------------------------------------------------

    def _client(self, address: Address, sentinel: bool = False) -> Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.tls.ca_file} if self.tls and not sentinel else {}
        return Redis(
            host=address[0],
            port=address[1],
            password=self.sentinel_password if sentinel else self.password,
            socket_timeout=2,
            socket_connect_timeout=1,
            decode_responses=True,
            **tls,
        )

    def node_client(self, address: Address) -> Redis:
        """A plain (not Sentinel-managed) client on one data node: to see where writes landed."""
        return self._client(address)

    def _answers(self, address: Address, sentinel: bool = False) -> bool:
        with self._client(address, sentinel) as client:
            return bool(client.ping())

    def _role(self, address: Address) -> str:
        try:
            with self._client(address) as client:
                return str(client.execute_command("ROLE")[0])
        except RedisError:
            return "unreachable"

    def _linked(self, address: Address) -> bool:
        with self._client(address) as client:
            info: dict[str, Any] = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _replica_seen(self, address: Address) -> bool:
        """Every live sentinel lists the node as a healthy replica (so it may be promoted in a failover)."""
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with self._client(sentinel.address, sentinel=True) as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
            states = [_pairs(replica) for replica in replicas]
            if not any(
                (state.get("ip"), int(state.get("port", 0))) == address and state.get("flags") == "slave"
                for state in states
            ):
                return False
        return True

    def _acquainted(self, address: Address) -> bool:
        with self._client(address, sentinel=True) as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
            others = client.execute_command("SENTINEL", "SENTINELS", self.master_name)
        return len(replicas) >= self.replica_count and len(others) >= self.sentinel_count - 1

    def _wait(self, probe: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            for process in [*self.nodes, *self.sentinels]:
                if process.process is not None and process.process.poll() is not None:
                    raise RedisUnavailable(
                        f"{process.name} exited with code {process.process.returncode} "
                        f"(log: {self.workdir / (process.name + '.log')})"
                    )
            with contextlib.suppress(RedisError, OSError):
                if probe():
                    return
            time.sleep(0.05)
        raise RedisUnavailable(f"timed out waiting for {what} (logs in {self.workdir})")


def _pairs(reply: Any) -> dict[str, str]:
    """A sentinel's flat [key, value, key, value, ...] reply (RESP2) as a dict."""
    if isinstance(reply, dict):
        return {str(key): str(value) for key, value in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def _without_replicaof(argv: list[str]) -> list[str]:
    if "--replicaof" not in argv:
        return list(argv)
    at = argv.index("--replicaof")
    return argv[:at] + argv[at + 3 :]
