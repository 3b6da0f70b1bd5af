"""A worker's capacity (WORKER_MAX_ACCOUNTS), end to end: a real worker process (fake Telegram), the backend and the
CLI. The worker says its capacity with its presence, refuses a start beyond it with the reason's code (the account
reads stopped, and why; the CLI shows it), and runs the account once there is room: the control plane tries again."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from redis import Redis

from celery_app import keys
from common.details import Detail, detail
from tests.support.stack import ROOT, Stack, wait_until
from tests.test_accounts_processes import import_account, online
from tests.test_manager import Script
from worker.loops import FILES_BESIDES_CLIENTS

pytestmark = pytest.mark.processes
PHONES = ("+15550009001", "+15550009002", "+15550009003")
REFUSED = detail("worker_full", worker="w1", limit=2)


def status(redis: Redis, account_id: int) -> dict[str, str]:
    return redis.hgetall(keys.account_state("w1", account_id))


def test_a_start_beyond_the_capacity_is_refused_with_its_reason_until_there_is_room(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    stack.start_backend()
    stack.start_worker("w1", WORKER_MAX_ACCOUNTS="2")
    online(stack, "w1")
    assert redis_client.hget(keys.worker_info("w1"), "max_accounts") == "2"  # its capacity, with its presence
    ids = [import_account(stack, "w1", phone) for phone in PHONES]

    started = stack.cli("accounts", "start-all", "--worker", "w1", "--yes")
    assert started.returncode == 0, started.stderr
    lines = started.stdout.splitlines()
    assert lines[:2] == [f"account {ids[0]}: starting (starting)", f"account {ids[1]}: starting (starting)"]
    assert lines[2] == f"account {ids[2]}: not started ({REFUSED.text})"
    assert "runs as many accounts as it may (2, WORKER_MAX_ACCOUNTS)" in lines[2]
    wait_until(lambda: all(status(redis_client, i).get("status") == "running" for i in ids[:2]), 20, message="two run")

    refused = status(redis_client, ids[2])  # where the bot reads it: stopped, with the reason's code
    assert refused["status"] == "stopped" and Detail.decode(refused["code"]) == REFUSED
    shown = stack.cli_json("accounts", "show", str(ids[2]))
    assert shown["status"] == "stopped" and shown["detail"] == REFUSED.text
    assert not redis_client.hexists(keys.worker_specs("w1"), str(ids[2]))  # not among what it resumes
    assert json.loads(redis_client.hget(keys.worker_report("w1"), "accounts")) == {"running": sorted(ids[:2])}

    # Room again: the control plane, which wants the account running, starts it on its next try.
    assert stack.cli("accounts", "stop", str(ids[0])).returncode == 0
    wait_until(
        lambda: status(redis_client, ids[2]).get("status") == "running", 90, message="started once there is room"
    )
    assert status(redis_client, ids[0])["status"] == "stopped"


def test_a_worker_raises_its_open_files_limit_to_what_its_capacity_needs() -> None:
    """A client is a socket: with the soft limit at a distribution's usual 1024, 5,000 clients would fail to
    connect. The worker raises it up to the hard limit, and says so when even that is too low."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    code = "import logging; logging.basicConfig(); from worker.loops import open_files_for; print(open_files_for(5000))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
    )
    assert result.returncode == 0, result.stderr
    wanted = 5000 + FILES_BESIDES_CLIENTS
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        assert int(result.stdout) == wanted and "open-files limit" not in result.stderr
    else:
        assert int(result.stdout) == hard and f"5000 clients need about {wanted}" in result.stderr
