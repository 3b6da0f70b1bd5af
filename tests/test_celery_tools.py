"""Celery's own tools see the fleet's workers, and never a secret: `celery -A celery_app inspect`, task events."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from celery_app.contract import AccountSpec, SubmitLoginCode, masked
from tests.support.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.processes
CELERY = str(Path(sys.executable).parent / "celery")


W1 = f"w1@{socket.gethostname()}"  # the worker's Celery node name: with -d, inspect returns once it answered


def celery(stack: Stack, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CELERY, "-A", "celery_app", *args, "--timeout", "5", "-d", W1],
        cwd=cwd,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inspect_sees_the_worker_its_queue_and_its_stats(stack: Stack, tmp_path: Path) -> None:
    stack.start_worker("w1")
    wait_until(lambda: "pong" in celery(stack, "inspect", "ping").stdout, 60, interval=0.5, message="inspect ping")
    queues = celery(stack, "inspect", "active_queues")
    assert queues.returncode == 0 and "'name': 'worker.w1'" in queues.stdout
    stats = celery(stack, "inspect", "stats", "--json")
    assert stats.returncode == 0 and '"pool"' in stats.stdout
    assert "test-secret-key" not in stats.stdout + queues.stdout
    # From any directory, pointed at the project with --workdir.
    elsewhere = subprocess.run(
        [CELERY, "--workdir", str(ROOT), "-A", "celery_app", "inspect", "ping", "--timeout", "5", "-d", W1],
        cwd=tmp_path,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pong" in elsewhere.stdout, elsewhere.stdout + elsewhere.stderr


def test_task_arguments_are_shown_masked() -> None:
    spec = AccountSpec(
        account_id=5, phone_enc="p" * 40, api_id=123, api_hash_enc="h" * 40, session_enc="s" * 40, proxy_enc=None
    )
    shown = spec.masked_repr()
    assert "ppp" not in shown and "hhh" not in shown and "sss" not in shown
    assert "'account_id': 5" in shown and "'proxy_enc': None" in shown
    code = SubmitLoginCode(login_id="a" * 32, code="1 2 3 4 5")
    assert "12345" not in code.masked_repr() and "'code': '***'" in code.masked_repr()
    assert masked({"specs": [{"session_enc": "x"}]}) == {"specs": [{"session_enc": "***"}]}


def test_celery_events_dump_shows_the_workers_task_events(stack: Stack) -> None:
    import threading

    from celery_app.app import create_celery_app
    from celery_app.contract import TaskName, queue_for

    stack.start_worker("w1")
    wait_until(lambda: "pong" in celery(stack, "inspect", "ping").stdout, 60, interval=0.5, message="inspect ping")
    dump = subprocess.Popen(
        [CELERY, "-A", "celery_app", "events", "--dump"],
        cwd=ROOT,
        env={**stack.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack.processes.append(dump)  # type: ignore[arg-type]
    lines: list[str] = []

    def read() -> None:
        for line in dump.stdout:  # type: ignore[union-attr]
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    app = create_celery_app(stack.env["REDIS_URL"])
    try:
        wait_until(lambda: any("heartbeat" in line for line in lines), 60, message="the dump receives events")

        def task_seen() -> bool:
            app.send_task(TaskName.PING.value, queue=queue_for("w1")).get(timeout=30)
            return any("fleet.ping" in line for line in lines)

        wait_until(task_seen, 60, interval=1, message="the ping task's events in the dump")
    finally:
        dump.terminate()
        dump.wait(30)
        app.close()
    assert any("w1@" in line for line in lines)
