"""One lost worker host gives away its own accounts and nothing else (issue 21), with real processes and ACLs.

Two real workers, each on the Redis login `add --issue-login` printed for it and with no SECRET_KEY, run Telethon
clients against the loopback MTProto server under a real backend. What worker w2's login can do to w1's work is
tried with that login itself, as a taken-over w2 host would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from celery_app import keys, leases
from celery_app.contract import queue_for
from common.sealing import KeyPair, SealError, is_sealed, open_sealed
from sandbox.mtproto import MTProtoServer
from tests.support.stack import Stack, wait_until
from tests.test_real_telethon import API_HASH, server, server_key, wait_status
from tests.test_worker_logins import acl_denials

FIXTURES = (server_key, server)
pytestmark = pytest.mark.processes


def _login(stack: Stack, name: str) -> str:
    added = stack.cli("add", name, "--address", "127.0.0.1", "--issue-login")
    assert added.returncode == 0, added.stderr
    return next(line for line in added.stdout.splitlines() if line.startswith("REDIS_URL=")).removeprefix("REDIS_URL=")


def _start(stack: Stack, server: MTProtoServer, name: str, url: str) -> int:
    key_file = server.write_public_key(stack.workdir / "mtproto.pub")
    process = stack.start_worker(
        name, unset=("SECRET_KEY",), REDIS_URL=url, TG_MTPROTO_DC=server.dc_setting, TG_MTPROTO_PUBKEY=key_file
    )
    wait_until(
        lambda: (w := stack.cli_json("show", name)).get("status") == "online" and w.get("pid") == process.pid,
        30,
        message=f"{name} online on its own login",
    )
    return process.pid


def _key(path: Path) -> KeyPair:
    text = path.read_text().strip()
    return KeyPair.from_private_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _registry(redis: Redis, worker: str) -> dict[int, dict[str, object]]:
    return {int(k): json.loads(v) for k, v in redis.hgetall(keys.worker_specs(worker)).items()}


def _shown(stack: Stack, account_id: int) -> tuple[str, str]:
    document = stack.cli_json("accounts", "show", str(account_id))
    return document["worker"], document["status"]


def test_a_worker_host_reaches_only_its_own_accounts(
    stack: Stack, server: MTProtoServer, redis_client: Redis, redis_url: str
) -> None:
    phone = "+15550007301"
    session = server.session_string(server.add_account(phone, first_name="Kept").phone)
    stack.start_backend()
    urls = {name: _login(stack, name) for name in ("w1", "w2")}
    redis_client.execute_command("ACL", "LOG", "RESET")
    pids = {name: _start(stack, server, name, url) for name, url in urls.items()}
    for pid in pids.values():  # the worker processes run with no SECRET_KEY at all
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [item for item in environment if item.startswith(b"SECRET_KEY=")]
    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session, "--api-id", "12345",
        "--api-hash", API_HASH, "--phone", phone,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    account_id = int(imported.stdout.split("imported account ")[1].split()[0])
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_status(stack, account_id, "running", timeout=60)
    assert acl_denials(redis_url) == []  # both workers did all their work on their own logins

    # w2's host, taken over, tries w1's work with w2's login.
    taken = Redis.from_url(urls["w2"], decode_responses=True)
    refused = {
        "read w1's registry": lambda: taken.hgetall(keys.worker_specs("w1")),
        "read w1's queue": lambda: taken.lrange(queue_for("w1"), 0, -1),
        "read w1's unacknowledged messages": lambda: taken.hgetall(keys.worker_info("w1") + ":unacked"),
        "push onto w1's queue": lambda: taken.lpush(queue_for("w1"), "{}"),
        "write the account's status": lambda: taken.hset(keys.account_state("w1", account_id), "status", "banned"),
        "write the account's lease": lambda: taken.set(keys.worker_lease("w1", account_id), "w2/x"),
        "drop the account's lease": lambda: taken.delete(keys.worker_lease("w1", account_id)),
        "give itself the account": lambda: taken.hset(keys.account_assignment(account_id), "worker", "w2"),
        "write w1's events": lambda: taken.xadd(keys.worker_events("w1"), {"kind": "worker.offline"}),
        "write w1's heartbeat": lambda: taken.hset(keys.worker_info("w1"), "beat", "0"),
        "a script writing w1's status": lambda: taken.eval(
            "return redis.call('HSET', KEYS[1], 'status', 'banned')", 1, keys.account_state("w1", account_id)
        ),
    }
    for what, attempt in refused.items():
        with pytest.raises(NoPermissionError):
            attempt()
            pytest.fail(f"w2's login could {what}")
    # Its own lease for the account: the control plane gave the account to w1, so no lease is granted.
    assert leases.acquire(taken, account_id, "w2/taken", 30) == (False, "w1/")
    taken.close()
    assert _shown(stack, account_id) == ("w1", "running") and server.live_connections(phone) == 1
    assert {user for user, _reason, _object in acl_denials(redis_url)} == {"fleet-worker-w2"}

    # A move: the account runs on w2, sealed to w2's key only, and w1's sealed copy is gone.
    w1_key, w2_key = (_key(stack.workdir / f"worker-{name}.key") for name in ("w1", "w2"))
    moved = stack.cli("accounts", "move", str(account_id), "--to", "w2")
    assert moved.returncode == 0, moved.stderr
    wait_until(lambda: _shown(stack, account_id) == ("w2", "running"), 60, interval=0.3, message="running on w2")
    wait_until(lambda: account_id not in _registry(redis_client, "w1"), 30, message="w1's sealed copy gone")
    held = str(_registry(redis_client, "w2")[account_id]["session_enc"])
    assert is_sealed(held) and open_sealed(w2_key, held, "session_enc")
    with pytest.raises(SealError):
        open_sealed(w1_key, held, "session_enc")
    assert server.peak_connections(phone) == 1  # never ran on both
    assert {user for user, _reason, _object in acl_denials(redis_url)} == {"fleet-worker-w2"}


def test_a_worker_on_its_own_login_whose_key_changed_gets_no_work_until_trusted(
    stack: Stack, server: MTProtoServer
) -> None:
    stack.start_backend()
    url = _login(stack, "w1")
    first = _start(stack, server, "w1", url)
    wait_until(lambda: stack.cli_json("show", "w1")["key"], 30, message="key pinned")
    pinned = stack.cli_json("show", "w1")["key"]
    session = server.session_string(server.add_account("+15550007302").phone)
    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session, "--api-id", "12345",
        "--api-hash", API_HASH, "--phone", "+15550007302",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    account_id = int(imported.stdout.split("imported account ")[1].split()[0])
    os.kill(first, signal.SIGTERM)
    wait_until(lambda: stack.cli_json("show", "w1")["status"] == "offline", 30, message="w1 stopped")
    (stack.workdir / "worker-w1.key").unlink()  # a reinstalled host, or another machine: a new key pair
    _start(stack, server, "w1", url)
    wait_until(lambda: stack.cli_json("show", "w1")["key_pending"], 60, message="the changed key seen")
    refused = stack.cli("accounts", "start", str(account_id))
    assert refused.returncode != 0 and "key" in refused.stdout + refused.stderr
    assert server.live_connections("+15550007302") == 0 and stack.cli_json("show", "w1")["key"] == pinned
    trusted = stack.cli("workers", "trust", "w1", "--yes")
    assert trusted.returncode == 0, trusted.stderr
    shown = stack.cli_json("show", "w1")
    assert shown["key_pending"] is None and shown["key"] != pinned and shown["own_login"] is True
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_status(stack, account_id, "running", timeout=60)
