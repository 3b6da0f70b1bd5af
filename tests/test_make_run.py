"""`make run`'s stack (scripts/dev_stack.py) as a new user starts it: an embedded Redis when none answers, a
backend and a worker, and `.local/env` for a second shell; Ctrl-C (SIGTERM) stops everything it started."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT, MakeRun, fresh_machine, wait_until

pytestmark = pytest.mark.processes


def test_the_stack_runs_and_a_second_shell_reaches_it(tmp_path: Path, netguard_log: Path) -> None:
    local = tmp_path / "local"
    env = fresh_machine(tmp_path, netguard_log) | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'stack.db'}",
        "HEARTBEAT_INTERVAL": "1",
        "WORKER_OFFLINE_AFTER": "5",
        "WORKER_NAME": "dev",
        "SANDBOX": "0",  # the stack of a machine with Telegram (tests/test_sandbox_stack.py runs the sandbox's)
    }
    stack = MakeRun(env)
    lines = stack.lines
    try:
        wait_until(lambda: any("source" in line for line in lines), 60, message="the stack says how to reach it")
        assert any("started an embedded one" in line for line in lines)
        assert any("[stack] sandbox: off (SANDBOX=0)" in line for line in lines)
        sourced = subprocess.run(
            ["bash", "-c", f"set -a; . {local / 'env'}; set +a; exec {sys.executable} {ROOT / 'run_cli.py'} list"],
            cwd=tmp_path,  # another directory, another shell
            env={k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sourced.returncode == 0, sourced.stderr
        wait_until(
            lambda: (
                "🟢 online  dev"
                in subprocess.run(
                    ["bash", "-c", f". {local / 'env'}; exec {sys.executable} {ROOT / 'run_cli.py'} list"],
                    cwd=tmp_path,
                    env={k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")},
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
            ),
            60,
            interval=0.5,
            message="the stack's worker seen online from a second shell",
        )
        assert (local / "env").stat().st_mode & 0o077 == 0  # it holds SECRET_KEY
    finally:
        stack.stop(signal.SIGTERM)
    assert any("[stack] stopped" in line for line in lines)
    assert "Traceback" not in "".join(lines)
