"""The worker's operation executor in-process: fake Telegram clients, a real Redis, real loops and threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis

from celery_app import keys, leases
from celery_app.account_state import AccountStatus
from celery_app.contract import AccountSpec, OperationRequest
from celery_app.operations import OperationName
from common.crypto import SecretBox
from common.details import Detail, detail
from tests.support import fake_account_state, fake_telegram
from tests.support.fake_password import password_matches
from tests.support.fake_telegram import session_for
from tests.support.stack import wait_until
from tests.test_manager import API_HASH, Script, spec, wait_status
from worker import operations
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
from worker.operator import OperationExecutor
from worker.secrets import WorkerSecrets

SECRET = "operator-test-secret-key-0123456789abcdefgh"
BOX = SecretBox(SECRET)


@pytest.fixture(autouse=True)
def _fresh_fake_accounts() -> Iterator[None]:
    fake_account_state.reset_accounts()
    yield
    fake_account_state.reset_accounts()


@pytest.fixture
def executor(redis_client: Redis, script: Script) -> Iterator[Callable[..., OperationExecutor]]:
    made: list[tuple[OperationExecutor, AccountManager]] = []

    def make(concurrency: int = 4) -> OperationExecutor:
        manager = AccountManager(fake_telegram.factory, redis_client, "w1", "inst-w1", 2, 5.0)
        manager.open()
        operator = OperationExecutor(manager, WorkerSecrets.with_secret_key(BOX), "inst-w1", concurrency)
        made.append((operator, manager))
        return operator

    yield make
    for operator, manager in made:
        operator.close()
        manager.shutdown(timeout=5)


def request(operation_id: int, account_id: int, name: OperationName, **params: Any) -> OperationRequest:
    phone = f"+1555000{account_id:04d}"
    wire = AccountSpec(
        account_id=account_id,
        phone_enc=BOX.encrypt(phone),
        api_id=12345,
        api_hash_enc=BOX.encrypt(API_HASH),
        session_enc=BOX.encrypt(session_for(phone)),
    )
    return OperationRequest(operation_id=operation_id, name=name, params=params, spec=wire)


def decode(wire: AccountSpec) -> ClientSpec:
    return spec(wire.account_id)


def state(redis: Redis, operation_id: int) -> dict[str, str]:
    return redis.hgetall(keys.operation("w1", operation_id))


def finished(redis: Redis, *operation_ids: int, timeout: float = 30) -> list[dict[str, str]]:
    return wait_until(
        lambda: (
            all(state(redis, i).get("status") in ("done", "failed") for i in operation_ids)
            and [state(redis, i) for i in operation_ids]
        ),
        timeout,
        message=f"operations {operation_ids} finished",
    )


def test_an_account_that_is_not_running_is_connected_for_it_and_left_as_it_was(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000001", account={"sessions": 2, "spam": "free", "premium": True})
    operator = executor()
    accepted, refused = operator.submit([request(1, 1, OperationName.CHECK)], decode)
    assert accepted == [1] and refused == {}
    (outcome,) = finished(redis_client, 1)
    result = json.loads(outcome["result"])
    assert outcome["status"] == "done" and result["verdict"] == "ok" and result["other_sessions"] == 2
    assert result["premium"] is True and result["spam"] == "free"
    # Left as it was: not running, its Telegram connection closed, its lease free.
    assert operator.manager.runner_of(1) is None
    wait_until(lambda: redis_client.get("fake:connected:+15550000001") is None, 5, message="disconnected")
    assert leases.holder_of(redis_client, 1, "w1/x") is None
    assert redis_client.lrange("fake:violations", 0, -1) == []


def test_a_running_account_uses_its_own_client_never_a_second_connection(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000002", account={"sessions": 1})
    operator = executor()
    operator.manager.start(spec(2))
    wait_status(redis_client, 2, AccountStatus.RUNNING)
    operator.submit([request(2, 2, OperationName.TERMINATE_OTHERS)], decode)
    (outcome,) = finished(redis_client, 2)
    assert outcome["status"] == "done" and json.loads(outcome["result"]) == {"terminated": 1}
    assert redis_client.lrange("fake:violations", 0, -1) == []  # a second connection would be AUTH_KEY_DUPLICATED
    assert operator.manager.status_of(2).status is AccountStatus.RUNNING  # still running, untouched
    assert fake_account_state.account_state("+15550000002")["sessions"] == []  # no other authorisation left


def test_one_operation_per_account_at_a_time_and_a_bounded_number_per_worker(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    for account_id in range(1, 7):
        script.set(f"+1555000{account_id:04d}", account={"spam": "free", "spam_delay": 0.6})
    operator = executor(concurrency=2)
    running_at_once: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            # One atomic snapshot (MULTI/EXEC): read one by one, an operation that ends and the next that
            # starts in between are both seen running.
            snapshot = redis_client.pipeline(transaction=True)
            for i in range(1, 9):
                snapshot.hget(keys.operation("w1", i), "status")
            statuses = snapshot.execute()
            running_at_once.append(statuses.count("running"))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    requests = [request(i, i, OperationName.CHECK) for i in range(1, 7)]
    requests += [request(7, 1, OperationName.SESSIONS), request(8, 1, OperationName.TWO_FA)]
    operator.submit(requests, decode)
    outcomes = finished(redis_client, *range(1, 9), timeout=60)
    stop.set()
    sampler.join()
    assert all(o["status"] == "done" for o in outcomes)
    assert max(running_at_once) <= 2 and max(running_at_once) >= 1
    # Account 1's three operations ran one after another, in the order asked.
    calls = fake_account_state.account_state("+15550000001")["log"]
    spam_check = calls.index("send_message:SpamBot")
    sessions_op = calls.index("GetAuthorizationsRequest", spam_check + 1)  # after the check had finished
    assert calls.index("GetPasswordRequest") > sessions_op


def test_a_flood_wait_pauses_the_account_and_resumes_after_it_never_failing(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000003", account={"sessions": 1, "flood": {"op_calls": 1, "seconds": 2}})
    operator = executor()
    operator.submit([request(3, 3, OperationName.SESSIONS), request(4, 3, OperationName.TWO_FA)], decode)
    waiting = wait_until(
        lambda: (s := state(redis_client, 3)).get("status") == "flood_wait" and s, 20, message="flood wait shown"
    )
    assert float(waiting["until"]) > time.time() - 1 and "wait 2 s" in waiting["error"]
    assert state(redis_client, 4).get("status") == "queued"  # the rest of that account's work waits too
    first, second = finished(redis_client, 3, 4)
    assert first["status"] == "done" and second["status"] == "done"
    assert len(json.loads(first["result"])["sessions"]) == 2


def test_telegram_refusals_and_bad_parameters_fail_clearly_and_change_nothing(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000005", account={"taken": ["someone_else"], "password": "right-one"})
    operator = executor()
    bad_params = request(9, 5, OperationName.PROFILE, username="has space")
    accepted, refused = operator.submit([bad_params], decode)
    assert accepted == [] and "username" in refused[9]
    operator.submit(
        [
            request(10, 5, OperationName.PROFILE, username="someone_else", first_name="Anna"),
            request(
                11,
                5,
                OperationName.TWO_FA,
                current_password_enc=BOX.encrypt("wrong-one"),
                new_password_enc=BOX.encrypt("next-one"),
            ),
        ],
        decode,
    )
    taken, wrong = finished(redis_client, 10, 11)
    assert taken["status"] == "failed" and "already taken" in taken["error"]
    assert wrong["status"] == "failed" and "wrong" in wrong["error"] and "wrong-one" not in json.dumps(wrong)
    # Next to the English, the code the bots render: what failed, with the values it needs.
    assert Detail.decode(taken["code"]) is not None and Detail.decode(taken["code"]).code == "username_taken"
    assert Detail.decode(wrong["code"]) == detail("wrong_password")
    account = fake_account_state.account_state("+15550000005")
    assert account["first_name"] != "Anna" and password_matches(account, "right-one")


def test_a_start_waits_for_an_operations_own_connection_instead_of_running_twice(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000006", account={"spam": "free", "spam_delay": 1.5})
    operator = executor()
    operator.submit([request(12, 6, OperationName.CHECK)], decode)
    wait_until(lambda: state(redis_client, 12).get("status") == "running", 10, message="operation running")
    outcome = operator.manager.start(spec(6))
    assert outcome.ok
    wait_status(redis_client, 6, AccountStatus.RUNNING, timeout=30)
    assert finished(redis_client, 12)[0]["status"] == "done"
    assert redis_client.lrange("fake:violations", 0, -1) == []


def test_operations_do_not_import_telethon_until_they_run() -> None:
    assert operations.SPAMBOT == "SpamBot"  # importing worker.operator/operations alone is cheap


def test_check_on_a_stopped_account_telegram_refuses_at_connect_reports_it_banned(
    executor: Callable[..., OperationExecutor], redis_client: Redis, script: Script
) -> None:
    """Telethon asks who it is inside connect() for a string session, so a banned account fails right there:
    for `check` that is the verdict; any other operation fails with the reason."""
    from telethon import errors

    class BannedAtConnect(fake_telegram.FakeClient):
        async def connect(self) -> None:
            raise errors.UserDeactivatedBanError(request=None)

    operator = executor()
    operator.manager.factory = BannedAtConnect
    operator.submit([request(13, 7, OperationName.CHECK), request(14, 7, OperationName.SESSIONS)], decode)
    check, sessions = finished(redis_client, 13, 14)
    assert check["status"] == "done" and json.loads(check["result"])["verdict"] == "banned"
    assert sessions["status"] == "failed" and "banned" in sessions["error"]
    assert leases.holder_of(redis_client, 7, "w1/x") is None
