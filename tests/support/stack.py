"""Starts the real entry points (`run_worker.py`, `run_backend.py`, `run_cli.py`) as the README does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NETGUARD_DIR = ROOT / "tests" / "netguard"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnop"


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s: {message or predicate} (last value: {last!r})")


class Stack:
    """The environment and the processes of one test; everything started is killed at teardown."""

    def __init__(self, workdir: Path, redis_url: str, database_url: str, netguard_log: Path) -> None:
        self.workdir = workdir
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(NETGUARD_DIR),
            "PYTHONUNBUFFERED": "1",
            "FLEET_NETGUARD": "1",
            "FLEET_NETGUARD_LOG": str(netguard_log),
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SECRET_KEY": TEST_SECRET_KEY,
            "HEARTBEAT_INTERVAL": "0.3",
            "WORKER_OFFLINE_AFTER": "2",
            "WORKER_THREADS": "2",
            "LOG_LEVEL": "INFO",
            "FLEET_ENV_FILE": str(workdir / ".env"),  # never a developer's .env in the project folder
            "STATE_DIRECTORY": str(workdir),  # the workers' key files (worker-<name>.key) stay in the test's folder
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def spawn(
        self,
        script: str,
        *args: str,
        env: dict[str, str] | None = None,
        log_name: str = "",
        unset: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        log_path = self.workdir / f"{log_name or Path(script).stem}-{len(self.processes)}.log"
        handle = open(log_path, "wb")
        process = subprocess.Popen(
            [sys.executable, str(ROOT / script), *args],
            cwd=self.workdir,
            env={k: v for k, v in {**self.env, **(env or {})}.items() if k not in unset},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        self.processes.append(process)
        self.logs[process.pid] = log_path
        return process

    def start_worker(self, name: str, unset: tuple[str, ...] = (), **env: str) -> subprocess.Popen[bytes]:
        """`unset`: variables of the stack's environment this worker does not get (SECRET_KEY, say)."""
        return self.spawn("run_worker.py", env={"WORKER_NAME": name, **env}, log_name=f"worker-{name}", unset=unset)

    def start_backend(self, interval: float = 0.5, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn("run_backend.py", str(interval), env=env, log_name="backend")

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60, input_text: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "run_cli.py"), *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
        )

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.cli_json("list")}

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def shutdown(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class MakeRun:
    """`make run`'s stack (`python -m scripts.dev_stack`) started as a user starts it, its output collected line
    by line (`lines`), in a session of its own (a Ctrl-C for it is `interrupt()`)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.dev_stack"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 120) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        self.process.wait(timeout)
        self._reader.join(10)


def fresh_machine(tmp_path: Path, netguard_log: Path) -> dict[str, str]:
    """What a fresh clone has: no .env, no Redis answering at the default URL, an empty default database."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{NETGUARD_DIR}:{ROOT}",
        "FLEET_NETGUARD": "1",
        "FLEET_NETGUARD_LOG": str(netguard_log),
        "FLEET_ENV_FILE": str(tmp_path / ".env"),
        "FLEET_LOCAL_DIR": str(tmp_path / "local"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'real.db'}",
        "WORKER_NAME": "box",
        "PYTHONUNBUFFERED": "1",
    }
