"""Flower, run as operators run it, shows the fleet's worker and its tasks, and nothing secret or personal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_telegram import session_for
from tests.support.stack import ROOT, Stack, wait_until

pytestmark = pytest.mark.processes
PHONE = "+15550007788"
API_HASH = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        text = response.read().decode()
    return text, json.loads(text)


def test_flower_sees_the_worker_and_its_tasks_without_secrets(stack: Stack, telegram: Any) -> None:
    stack.start_backend()
    stack.start_worker("w1")
    port = free_port()
    flower = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "celery_app", "flower", "--address=127.0.0.1",
         f"--port={port}"],
        cwd=ROOT,
        env={**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.processes.append(flower)  # stopped with the stack

    def workers() -> dict[str, Any]:
        try:
            return get(port, "/api/workers?refresh=1")[1]
        except OSError:
            return {}

    wait_until(lambda: any(name.startswith("w1@") for name in workers()), 90, interval=1, message="w1 in Flower")
    wait_until(lambda: stack.cli("show", "w1").returncode == 0, 30, message="w1 recorded")
    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session_for(PHONE), "--api-id", "12345",
        "--api-hash", API_HASH, "--phone", PHONE,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert stack.cli("accounts", "start", "1").returncode == 0

    def start_task_seen() -> list[dict[str, Any]]:
        tasks = get(port, "/api/tasks")[1]
        return [t for t in tasks.values() if t.get("name") == "fleet.account.start" and t.get("state") == "SUCCESS"]

    seen = wait_until(start_task_seen, 90, interval=1, message="the start task in Flower")
    assert "'account_id': 1" in seen[0]["args"] and "'session_enc': '***'" in seen[0]["args"]
    answers = get(port, "/api/workers?refresh=1")[0] + get(port, "/api/tasks")[0]
    digits = PHONE.lstrip("+")
    assert digits not in answers and digits[-7:] not in answers
    assert API_HASH not in answers and session_for(PHONE) not in answers
    assert "gAAAAA" not in answers  # not even an encrypted secret (Fernet tokens start so)
    assert "test-secret-key" not in answers
