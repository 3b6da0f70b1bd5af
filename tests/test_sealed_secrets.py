"""Secrets sealed to the worker that runs them (backend/sealing.py, worker/secrets.py): the control plane opens what
its database keeps with SECRET_KEY and seals it to the key pinned for the worker a payload goes to; worker
processes run with no SECRET_KEY at all, log accounts in (the new session sealed back to the control plane), run
them, and keep in their registry only what was sealed to them; a move re-seals for the new worker and the old
one's copy is gone."""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import pytest
from redis import Redis

from backend.sealing import Sealer, control_keys
from celery_app import keys
from celery_app.contract import AccountSpec, StartAccounts
from common.crypto import SecretBox, SecretError
from common.sealing import KeyPair, SealError, is_sealed, open_sealed, seal
from sandbox.mtproto import MTProtoServer
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until
from tests.test_real_telethon import API_HASH, server, server_key, start_real_worker, wait_status
from worker.secrets import WorkerSecrets

FIXTURES = (server_key, server)
BOX = SecretBox(TEST_SECRET_KEY)
W1, W2 = KeyPair.generate(), KeyPair.generate()


def spec(account_id: int = 7) -> AccountSpec:
    return AccountSpec(
        account_id=account_id,
        phone_enc=BOX.encrypt("+15550001111"),
        api_id=12345,
        api_hash_enc=BOX.encrypt(API_HASH),
        session_enc=BOX.encrypt("1" + "A" * 300),
        proxy_enc=BOX.encrypt("socks5://user:pass@10.0.0.1:1080"),
    )


def sealer(pinned: dict[str, str]) -> Sealer:
    return Sealer(BOX, TEST_SECRET_KEY, pinned.get)


def test_every_secret_of_a_payload_is_sealed_to_the_worker_it_goes_to() -> None:
    payload = StartAccounts(specs=[spec(1), spec(2)])
    sealed = sealer({"w1": W1.public_key}).for_worker("w1", payload)
    for original, out in zip(payload.specs, sealed.specs, strict=True):
        for field in ("phone_enc", "api_hash_enc", "session_enc", "proxy_enc"):
            value = getattr(out, field)
            assert is_sealed(value)
            assert open_sealed(W1, value, field) == BOX.decrypt(getattr(original, field))
            with pytest.raises(SealError):
                open_sealed(W2, value, field)  # another worker's key opens nothing
            with pytest.raises(SealError):
                open_sealed(W1, value, "phone_enc" if field != "phone_enc" else "session_enc")  # nor as another field
            with pytest.raises(SecretError):
                BOX.decrypt(value)  # and SECRET_KEY opens nothing either
        assert out.account_id == original.account_id and out.api_id == original.api_id
    assert sealer({}).for_worker("w1", payload) == payload  # a worker with no pinned key: as before


def test_the_worker_opens_what_is_sealed_to_it_and_seals_back_to_the_control_plane() -> None:
    control = control_keys(TEST_SECRET_KEY)[0]
    mine = WorkerSecrets(W1, None, lambda: control.public_key)
    out = sealer({"w1": W1.public_key}).for_worker("w1", spec())
    assert mine.decrypt(out.session_enc, "session_enc") == "1" + "A" * 300
    with pytest.raises(SecretError, match="not sealed to this worker and it has no SECRET_KEY"):
        mine.decrypt(spec().session_enc, "session_enc")
    with pytest.raises(SecretError, match="does not open with this worker's key"):
        WorkerSecrets(W2, None, lambda: None).decrypt(out.session_enc, "session_enc")
    back = mine.encrypt("1" + "B" * 300, "session_enc")
    assert is_sealed(back)
    stored = sealer({}).receive(back, "session_enc")  # what the database keeps: SECRET_KEY's token
    assert not is_sealed(stored) and BOX.decrypt(stored) == "1" + "B" * 300
    with pytest.raises(SealError):
        sealer({}).receive(seal(W2.public_key, "x", "session_enc"), "session_enc")


def _open_file_key(path: Path) -> KeyPair:
    text = path.read_text().strip()
    return KeyPair.from_private_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def registry(redis: Redis, worker: str) -> dict[int, dict[str, object]]:
    return {int(k): json.loads(v) for k, v in redis.hgetall(keys.worker_specs(worker)).items()}


@pytest.mark.processes
def test_workers_without_secret_key_log_in_run_and_move_sealed_accounts(
    stack: Stack, server: MTProtoServer, redis_client: Redis
) -> None:
    phone = "+15550007009"
    server.add_account(phone, code="12345", first_name="Sealed")
    stack.start_backend()
    for name in ("w1", "w2"):
        start_real_worker(stack, server, name, unset=("SECRET_KEY",))
    wait_until(lambda: all(stack.cli_json("show", n)["key"] for n in ("w1", "w2")), 30, message="both keys pinned")

    login = stack.cli(
        "accounts", "login", "--worker", "w1", "--phone", phone, "--api-id", "12345", "--api-hash", API_HASH,
        "--start", input_text="1 2 3 4 5\n",
    )  # fmt: skip
    assert login.returncode == 0, login.stderr
    account_id = int(login.stdout.split("logged in: account ")[1].split()[0])
    wait_status(stack, account_id, "running", timeout=60)
    assert server.live_connections(phone) == 1

    w1_key, w2_key = (_open_file_key(stack.workdir / f"worker-{n}.key") for n in ("w1", "w2"))
    held = registry(redis_client, "w1")[account_id]
    for field in ("phone_enc", "api_hash_enc", "session_enc"):
        value = str(held[field])
        assert is_sealed(value)  # what sits in Redis for w1 opens with w1's key only
        open_sealed(w1_key, value, field)
        with pytest.raises(SealError):
            open_sealed(w2_key, value, field)
        with pytest.raises(SecretError):
            BOX.decrypt(value)

    moved = stack.cli("accounts", "move", str(account_id), "--to", "w2")
    assert moved.returncode == 0, moved.stderr
    wait_until(lambda: shown_on(stack, account_id) == ("w2", "running"), 60, interval=0.3, message="running on w2")
    wait_until(lambda: account_id not in registry(redis_client, "w1"), 30, message="w1's sealed copy gone")
    on_w2 = str(registry(redis_client, "w2")[account_id]["session_enc"])
    assert open_sealed(w2_key, on_w2, "session_enc")
    with pytest.raises(SealError):
        open_sealed(w1_key, on_w2, "session_enc")
    assert server.peak_connections(phone) == 1  # never ran twice on the way


def shown_on(stack: Stack, account_id: int) -> tuple[str, str]:
    document = stack.cli_json("accounts", "show", str(account_id))
    return document["worker"], document["status"]


def test_a_token_of_another_secret_key_goes_as_it_is_and_only_its_account_is_refused() -> None:
    foreign = SecretBox("another-secret-key-0123456789abcdefghijkl").encrypt("1" + "C" * 300)
    out = sealer({"w1": W1.public_key}).for_worker("w1", spec().model_copy(update={"session_enc": foreign}))
    assert out.session_enc == foreign and is_sealed(out.api_hash_enc)  # the rest is sealed as ever
    with pytest.raises(SecretError, match="not sealed to this worker"):
        WorkerSecrets(W1, None, lambda: None).decrypt(out.session_enc, "session_enc")


@pytest.mark.processes
def test_a_rotated_key_reseals_the_registry_and_the_account_keeps_running_and_resumes(
    stack: Stack, server: MTProtoServer, redis_client: Redis
) -> None:
    session = server.session_string(server.add_account("+15550007010", first_name="Rotated").phone)
    stack.start_backend()
    worker = start_real_worker(stack, server, "w1", unset=("SECRET_KEY",))
    wait_until(lambda: stack.cli_json("show", "w1")["key"], 30, message="w1's key pinned")
    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session, "--api-id", "12345",
        "--api-hash", API_HASH, "--phone", "+15550007010",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    account_id = int(imported.stdout.split("imported account ")[1].split()[0])
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_status(stack, account_id, "running", timeout=60)
    key_file = stack.workdir / "worker-w1.key"
    old = _open_file_key(key_file)

    rotated = stack.cli("workers", "rotate-key", "w1")
    assert rotated.returncode == 0, rotated.stderr
    new = _open_file_key(key_file)
    assert new.public_key != old.public_key and key_file.stat().st_mode & 0o077 == 0
    assert rotated.stdout.strip() == f"worker 'w1': new key {new.fingerprint} pinned"
    assert stack.cli_json("show", "w1")["key"] == new.fingerprint
    held = str(registry(redis_client, "w1")[account_id]["session_enc"])
    open_sealed(new, held, "session_enc")  # the registry is sealed to the new key, and to it only
    with pytest.raises(SealError):
        open_sealed(old, held, "session_enc")
    assert shown_on(stack, account_id) == ("w1", "running")

    # Scans go on with no alarm; a worker restarted from its key file resumes what is sealed to the new key.
    stack.stop(worker, signal.SIGKILL)
    start_real_worker(stack, server, "w1", unset=("SECRET_KEY",))
    wait_status(stack, account_id, "running", timeout=60)
    kinds = [event["kind"] for event in stack.cli_json("show", "w1")["events"]]
    assert "worker.key_rotated" in kinds and "worker.key_changed" not in kinds
    assert stack.cli_json("show", "w1")["key_pending"] is None


def test_a_token_that_does_not_open_is_said_once_not_at_every_scan(caplog: pytest.LogCaptureFixture) -> None:
    foreign = SecretBox("another-secret-key-0123456789abcdefghijkl").encrypt("1" + "C" * 300)
    once = sealer({"w1": W1.public_key})
    for _ in range(5):
        once.for_worker("w1", spec().model_copy(update={"session_enc": foreign}))
    said = [r for r in caplog.records if "does not open with this SECRET_KEY" in r.getMessage()]
    assert len(said) == 1 and "1CCC" not in said[0].getMessage()
