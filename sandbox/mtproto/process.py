"""The loopback MTProto server in a process of its own, for benchmarks with thousands of clients: their load
then never shares a GIL (or a CPU figure) with the process being measured.

    with ServerProcess() as server:                      # runs `python -m sandbox.mtproto.process`
        sessions = server.add_accounts(phones)           # logged-in StringSessions, auth keys made beforehand
        env = {"TG_MTPROTO_DC": server.dc_setting, "TG_MTPROTO_PUBKEY": server.write_public_key(path)}
        server.deliver(phones[0], "hello", sender=phones[1])
        server.call("live_connections", phones[0])       # any MTProtoServer method, by name
        server.stats()                                   # open connections and the server's own CPU seconds

The parent talks to the child over a `multiprocessing.connection` on 127.0.0.1 (an authenticated socket): one
request, one answer; an exception in the child is raised again in the parent as `ServerProcessError`.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import time
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ServerProcessError(RuntimeError):
    """The server process failed a request (its traceback's last line) or went away."""


def raise_fd_limit() -> int:
    """Lift this process's open-files limit to its hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


class ServerProcess:
    """The parent's handle on a server process (its own RSA key, a free port, no call log)."""

    def __init__(self, log_path: Path | None = None, start_timeout: float = 60.0) -> None:
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self.port = 0
        self.dc_id = 2
        self.host = "127.0.0.1"

    def start(self) -> ServerProcess:
        authkey = secrets.token_hex(16)
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.mtproto.process"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "MTPROTO_CONTROL_KEY": authkey},
            stdout=subprocess.PIPE,
            stderr=log,
        )
        if log is not subprocess.DEVNULL:
            log.close()
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the child's first line: where to reach it
        if not line:
            raise ServerProcessError(f"the server process exited with {self.process.wait()}")
        hello = json.loads(line)
        self.port, self.dc_id, self.host = hello["port"], hello["dc_id"], hello["host"]
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._connection = Client(tuple(hello["control"]), authkey=authkey.encode())
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.send(("stop", (), {}))
                self._connection.recv()
            except (OSError, EOFError):
                pass
            self._connection.close()
            self._connection = None
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`MTProtoServer.<method>(*args, **kwargs)` in the server process; its (picklable) result."""
        if self._connection is None:
            raise ServerProcessError("the server process is not running")
        try:
            self._connection.send((method, args, kwargs))
            ok, result = self._connection.recv()
        except (OSError, EOFError) as error:
            raise ServerProcessError(f"the server process went away: {error}") from error
        if not ok:
            raise ServerProcessError(result)
        return result

    @property
    def dc_setting(self) -> str:
        return f"{self.dc_id}@{self.host}:{self.port}"

    def write_public_key(self, path: str | Path) -> str:
        Path(path).write_text(self.call("public_key"))
        return str(path)

    def add_accounts(self, phones: list[str], first_name: str = "Bench") -> list[str]:
        """Accounts for `phones`, each logged in on an auth key of its own made here (no key exchange when a
        client connects); their StringSessions, in order."""
        return list(self.call("add_accounts", phones, first_name))

    def deliver(self, phone: str, text: str, *, sender: str) -> int:
        return int(self.call("deliver", phone, text, sender=sender))

    def stats(self) -> dict[str, float]:
        """open: TCP connections open now; accepted: so far; cpu: the server process's CPU seconds so far."""
        return dict(self.call("stats"))


# --- the child ------------------------------------------------------------------------------------------------


def _serve() -> None:
    from sandbox.mtproto import MTProtoServer

    raise_fd_limit()
    server = MTProtoServer(record_calls=False).start()

    def add_accounts(phones: list[str], first_name: str) -> list[str]:
        sessions = []
        for phone in phones:
            server.add_account(phone, first_name=first_name)
            sessions.append(server.session_string(phone))
        return sessions

    def stats() -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"open": server.open_connections(), "accepted": server.accepted, "cpu": usage.ru_utime + usage.ru_stime}

    extra = {"add_accounts": add_accounts, "stats": stats, "public_key": lambda: server.public_key_pem}
    authkey = os.environ.pop("MTPROTO_CONTROL_KEY").encode()
    with Listener(("127.0.0.1", 0), authkey=authkey) as listener:
        hello = {"port": server.port, "dc_id": server.dc_id, "host": server.host, "control": listener.address}
        print(json.dumps(hello), flush=True)
        with listener.accept() as control:
            while True:
                try:
                    method, args, kwargs = control.recv()
                except (EOFError, OSError):
                    break
                if method == "stop":
                    control.send((True, None))
                    break
                try:
                    handler = extra.get(method) or getattr(server, method)
                    result = handler(*args, **kwargs) if callable(handler) else handler
                    control.send((True, result))
                except Exception as error:  # noqa: BLE001 - the parent raises it again
                    control.send((False, f"{method}: {type(error).__name__}: {error}"))
    server.stop()


if __name__ == "__main__":
    _serve()
