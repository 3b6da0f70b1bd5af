"""Every entry point answers --version and --help without starting anything; `run_worker.py --check` tells an
ops person whether this host can run its worker; LOG_FORMAT=json gives one JSON object per log line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis import Redis

from celery_app import keys
from celery_app.crypto import SecretBox
from tests.support.stack import ROOT, TEST_SECRET_KEY, Stack, wait_until
from version import __version__

pytestmark = pytest.mark.processes


def run(stack: Stack, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=stack.workdir,
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("script", ["run.py", "run_backend.py", "run_worker.py", "run_cli.py"])
def test_every_entry_point_has_version_and_help(stack: Stack, redis_client: Redis, script: str) -> None:
    version = run(stack, script, "--version")
    assert version.returncode == 0 and __version__ in version.stdout
    helped = run(stack, script, "--help")
    assert helped.returncode == 0 and "usage" in helped.stdout.lower()
    assert redis_client.zcard(keys.HEARTBEATS) == 0  # nothing registered, nothing started


def test_worker_check_passes_on_a_good_host(stack: Stack) -> None:
    result = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout and "worker name 'w1' is free" in result.stdout


def test_worker_check_names_each_problem(stack: Stack, redis_client: Redis) -> None:
    redis_client.set(keys.SECRET_CANARY, SecretBox(TEST_SECRET_KEY).encrypt("fleet"))
    wrong = run(stack, "run_worker.py", "--check", WORKER_NAME="w1", SECRET_KEY="another-key-" + "x" * 30)
    assert wrong.returncode == 1 and "SECRET_KEY differs from the control host's" in wrong.stdout
    right = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert right.returncode == 0 and "SECRET_KEY decrypts" in right.stdout
    worker = stack.start_worker("w1")
    wait_until(lambda: redis_client.exists(keys.worker_owner("w1")), 30, message="w1 registered")
    taken = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert taken.returncode == 1 and "worker name 'w1' is in use by a running worker" in taken.stdout
    assert worker.poll() is None  # the check disturbed nothing
    down = run(stack, "run_worker.py", "--check", WORKER_NAME="w2", REDIS_URL="redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "unreachable" in down.stdout and "Traceback" not in down.stderr


def test_json_logs_are_one_object_per_line(stack: Stack, redis_client: Redis) -> None:
    worker = stack.start_worker("w1", LOG_FORMAT="json")
    wait_until(lambda: "consuming" in stack.log_of(worker), 30, message="worker started")
    stack.stop(worker)
    lines = [line for line in stack.log_of(worker).splitlines() if line.startswith("{")]
    documents = [json.loads(line) for line in lines]
    assert any("registered as worker" in d["message"] for d in documents)
    assert all({"time", "level", "logger", "message"} <= set(d) for d in documents)
    bad = run(stack, "run_worker.py", LOG_FORMAT="xml")
    assert bad.returncode == 78 and "LOG_FORMAT must be text or json" in bad.stderr
