"""The account manager in-process: fake Telegram clients, a real Redis, real threads and event loops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from celery_app import keys, leases
from celery_app.account_state import AccountState, AccountStatus, read_states
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from common.details import detail
from tests.support import fake_telegram
from tests.support.fake_telegram import VIOLATIONS, session_for
from tests.support.stack import wait_until
from worker import clients, failures, login
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
from worker.runtime import WorkerRuntime
from worker.secrets import WorkerSecrets

API_HASH = "0123456789abcdef0123456789abcdef"


class Script:
    """The fake Telegram's per-phone behaviour, as a file the fake re-reads at each connect."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.path.write_text("{}")

    def set(self, phone: str, **behaviour: Any) -> None:
        self.data[phone] = behaviour
        self.path.write_text(json.dumps(self.data))


@pytest.fixture
def make_manager(redis_client: Redis, script: Script) -> Iterator[Callable[..., AccountManager]]:
    managers: list[AccountManager] = []

    def make(name: str = "w1", threads: int = 2, lease_ttl: float = 5.0) -> AccountManager:
        manager = AccountManager(fake_telegram.factory, redis_client, name, f"inst-{name}", threads, lease_ttl)
        redis_client.zadd(keys.HEARTBEATS, {name: 1.0})  # known to the fleet, as a registered worker is
        manager.open()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.shutdown(timeout=5)


def spec(account_id: int, phone: str | None = None, session: str | None = None) -> ClientSpec:
    phone = phone or f"+1555000{account_id:04d}"
    return ClientSpec(account_id, phone, 12345, API_HASH, session if session is not None else session_for(phone))


def live(redis: Redis, account_id: int, worker: str = "w1") -> AccountState | None:
    return read_states(redis, {account_id: worker}).get(account_id)


def wait_status(
    redis: Redis, account_id: int, *statuses: AccountStatus, timeout: float = 5, worker: str = "w1"
) -> AccountState:
    return wait_until(
        lambda: (s := live(redis, account_id, worker)) and s.status in statuses and s,
        timeout,
        message=f"account {account_id} in {statuses}",
    )


def test_start_reports_running_with_identity_and_stop_releases_the_lease(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager()
    assert manager.start(spec(1)).ok
    state = wait_status(redis_client, 1, AccountStatus.RUNNING)
    assert state.username == "user0001" and state.worker == "w1" and state.active
    assert leases.holder_of(redis_client, 1, "w1/inst-w1") == "w1/inst-w1"
    outcome = manager.stop(1)
    assert outcome.ok
    state = wait_status(redis_client, 1, AccountStatus.STOPPED)
    assert not state.active

    kinds = [fields["kind"] for _id, fields in redis_client.xrange(keys.worker_events("w1"))]
    assert kinds.count("account.status") >= 3  # starting, running, stopped


def test_accounts_spread_evenly_over_the_loop_threads(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager(threads=3)
    for account_id in range(1, 11):
        manager.start(spec(account_id))
    loads = sorted(loop.clients for loop in manager.loops)
    assert loads == [3, 3, 4]
    for account_id in range(1, 11):
        wait_status(redis_client, account_id, AccountStatus.RUNNING)


def test_each_failure_is_classified_and_never_disturbs_the_others(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000001", connect="unauthorized")
    script.set("+15550000002", connect="banned")
    script.set("+15550000003", connect="flood:120")
    script.set("+15550000004", connect="duplicated")
    manager = make_manager()
    for account_id in range(1, 6):
        manager.start(spec(account_id))
    revoked = wait_status(redis_client, 1, AccountStatus.UNAUTHORIZED)
    assert revoked.detail.startswith("the session is not authorized")
    assert revoked.coded == detail("session_not_authorized")  # the code the bots render, next to the English
    assert "USER_DEACTIVATED_BAN" in wait_status(redis_client, 2, AccountStatus.BANNED).detail
    flood = wait_status(redis_client, 3, AccountStatus.FLOOD_WAIT)
    assert flood.until is not None and 110 < flood.until - time.time() <= 120 and flood.active
    # Telegram revokes a key used from two places: the account needs a new login, like any revoked session.
    duplicated = wait_status(redis_client, 4, AccountStatus.UNAUTHORIZED)
    assert "AUTH_KEY_DUPLICATED" in duplicated.detail and not duplicated.active
    assert wait_status(redis_client, 5, AccountStatus.RUNNING).active
    # The terminal ones let go of their leases; the flood-waiting one keeps waiting, not silently.
    assert manager.held_accounts() == [3, 5] or sorted(manager.held_accounts()) == [3, 5]


def test_network_trouble_is_retried_with_backoff_until_it_clears(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000001", connect="network")
    manager = make_manager()
    manager.start(spec(1))
    state = wait_status(redis_client, 1, AccountStatus.ERROR)
    assert state.detail.startswith("network:") and "retry 1 in 2 s" in state.detail and state.active
    script.set("+15550000001", connect="ok")
    wait_status(redis_client, 1, AccountStatus.RUNNING, timeout=6)


def test_connect_is_always_bounded_by_a_timeout(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients, "CONNECT_TIMEOUT", 0.3)
    script.set("+15550000001", delay=60)
    manager = make_manager()
    manager.start(spec(1))
    manager.start(spec(2))
    state = wait_status(redis_client, 1, AccountStatus.ERROR, timeout=3)
    assert "timed out" in state.detail
    wait_status(redis_client, 2, AccountStatus.RUNNING)  # on the same loops, unaffected


def test_a_dropped_connection_reconnects(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000001", connect="drop:0.3")
    manager = make_manager()
    manager.start(spec(1))
    wait_status(redis_client, 1, AccountStatus.RUNNING)
    wait_status(redis_client, 1, AccountStatus.ERROR, AccountStatus.STARTING, timeout=3)
    script.set("+15550000001", connect="ok")
    wait_status(redis_client, 1, AccountStatus.RUNNING, timeout=6)


def test_a_second_worker_cannot_start_an_account_whose_lease_is_held(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    first, second = make_manager("w1"), make_manager("w2")
    assert first.start(spec(1)).ok
    wait_status(redis_client, 1, AccountStatus.RUNNING)
    refused = second.start(spec(1))
    assert not refused.ok and refused.detail == detail("running_elsewhere", worker="w1")
    assert refused.detail.text == "refused: the account is running on worker 'w1'"
    # A move: the new worker waits for the old one to let go, then runs it; never both at once.
    waiting = second.start(spec(1), wait_for_lease=5)
    assert waiting.ok and waiting.detail is not None and "waiting for worker 'w1'" in waiting.detail.text
    time.sleep(0.3)
    assert live(redis_client, 1).worker == "w1"  # the waiting worker wrote nothing meanwhile
    first.stop(1)
    state = wait_status(redis_client, 1, AccountStatus.RUNNING, worker="w2")
    assert state.worker == "w2"
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def test_a_start_whose_lease_no_replica_acknowledged_says_so_not_another_worker(
    make_manager: Callable[..., AccountManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "acquire", lambda *_args: (False, ""))  # granted, let go: no replica had it
    refused = make_manager("w1").start(spec(1))
    assert not refused.ok and refused.detail == detail("lease_unconfirmed")
    assert "None" not in refused.detail.text and "replica" in refused.detail.text


def test_a_lost_lease_stops_the_client_at_once(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager()
    manager.start(spec(1))
    manager.start(spec(2))
    wait_status(redis_client, 1, AccountStatus.RUNNING)
    wait_status(redis_client, 2, AccountStatus.RUNNING)
    leases.assign(redis_client, 1, "intruder")  # the control plane gave account 1 to another worker
    lost = leases.renew(redis_client, manager.held_accounts(), manager.holder, 5)
    assert lost == [1]
    manager.lease_lost(lost)
    wait_until(lambda: 1 not in manager.held_accounts(), 3, message="client 1 stopped")
    assert not redis_client.exists("fake:connected:+15550000001")
    assert redis_client.exists("fake:connected:+15550000002")
    # Let go once stopped, so the worker it was given to need not wait for the lease to expire.
    wait_until(lambda: not redis_client.exists(keys.worker_lease("w1", 1)), 3, message="lease let go")


def test_the_fence_stops_every_client(make_manager: Callable[..., AccountManager], redis_client: Redis) -> None:
    manager = make_manager()
    for account_id in (1, 2, 3):
        manager.start(spec(account_id))
        wait_status(redis_client, account_id, AccountStatus.RUNNING)
    manager.fence(detail("no_redis", seconds=3.0))
    wait_until(lambda: not manager.runners, 3, message="all clients stopped")
    assert not redis_client.keys("fake:connected:*")
    lost = wait_status(redis_client, 2, AccountStatus.LOST)
    assert lost.detail == "no contact with Redis for 3.0 s" and lost.coded == detail("no_redis", seconds=3.0)


def test_login_with_code_then_2fa(make_manager: Callable[..., AccountManager], script: Script) -> None:
    script.set("+15550000009", login={"code": "54321", "password": "hunter2"})
    manager = make_manager()
    login_id = manager.new_login_id()
    assert manager.send_code(login_id, spec(0, "+15550000009", session="")).state == "code_sent"
    wrong = manager.submit_code(login_id, "11111")
    assert (wrong.state, wrong.error, wrong.retry) == ("failed", "invalid_code", True)
    assert manager.submit_code(login_id, "54321").state == "password_needed"
    bad = manager.submit_password(login_id, "nope")
    assert (bad.error, bad.retry) == ("wrong_password", True)
    done = manager.submit_password(login_id, "hunter2")
    assert done.state == "authorized" and done.session == session_for("+15550000009")
    assert done.identity is not None and done.identity.username == "user0009"
    assert manager.submit_code(login_id, "54321").error == "unknown_login"  # finished logins are gone


def test_logins_expire_and_can_be_cancelled(
    make_manager: Callable[..., AccountManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager()
    first, second = manager.new_login_id(), manager.new_login_id()
    manager.send_code(first, spec(0, "+15550000010", session=""))
    assert manager.cancel_login(first)
    assert manager.submit_code(first, "12345").error == "unknown_login"
    monkeypatch.setattr(login, "LOGIN_TTL", 0.2)
    manager.send_code(second, spec(0, "+15550000011", session=""))
    time.sleep(0.3)
    assert manager.submit_code(second, "12345").error == "unknown_login"


def test_forged_and_foreign_payloads_change_nothing(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager()
    box = SecretBox("k" * 40)
    runtime = WorkerRuntime(WorkerInfo("w1", "", "", 1, "", 0, "i"), 2, manager, WorkerSecrets.with_secret_key(box))
    forged = runtime.start({"spec": {"account_id": 1, "phone": "+15550000001"}, "run_as_root": True})
    assert forged["error"] == "invalid_payload" and "run_as_root" in forged["message"]
    assert runtime.start("not even an object")["error"] == "invalid_payload"
    foreign = SecretBox("z" * 40)
    answer = runtime.start(
        {
            "spec": {
                "account_id": 1,
                "phone_enc": foreign.encrypt("+15550000001"),
                "api_id": 12345,
                "api_hash_enc": foreign.encrypt(API_HASH),
                "session_enc": foreign.encrypt(session_for("+15550000001")),
            }
        }
    )
    assert not answer["ok"] and "another SECRET_KEY" in answer["detail"]
    garbage_session = runtime.start(
        {
            "spec": {
                "account_id": 1,
                "phone_enc": box.encrypt("+15550000001"),
                "api_id": 1,
                "api_hash_enc": box.encrypt(API_HASH),
                "session_enc": box.encrypt("1notasession"),
            }
        }
    )
    assert not garbage_session["ok"] and "session string" in garbage_session["detail"]
    assert manager.runners == {} and live(redis_client, 1) is None and leases.holder_of(redis_client, 1, "w1/x") is None


def wire_spec(box: SecretBox, account_id: int) -> dict[str, Any]:
    phone = f"+1555000{account_id:04d}"
    return {
        "account_id": account_id,
        "phone_enc": box.encrypt(phone),
        "api_id": 12345,
        "api_hash_enc": box.encrypt(API_HASH),
        "session_enc": box.encrypt(session_for(phone)),
    }


def test_fenced_accounts_are_parked_then_resumed_when_their_leases_can_be_taken(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager()
    for account_id in (1, 2):
        manager.start(spec(account_id))
        wait_status(redis_client, account_id, AccountStatus.RUNNING)
    manager.fence(detail("no_redis", seconds=3.0))
    wait_until(lambda: not manager.runners, 3, message="all clients stopped")
    assert sorted(manager.parked) == [1, 2]
    leases.assign(redis_client, 2, "w2")  # meanwhile account 2 moved to another worker, which runs it
    redis_client.set(keys.worker_lease("w2", 2), "w2/other")
    assert manager.resume_parked() == 1
    assert wait_status(redis_client, 1, AccountStatus.RUNNING).worker == "w1"
    assert manager.parked == {} and 2 not in manager.runners
    assert redis_client.get(keys.worker_lease("w2", 2)) == "w2/other"
    assert not redis_client.exists("fake:connected:+15550000002")


def test_leases_lost_with_redis_data_are_taken_back_without_stopping_anything(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    manager = make_manager()
    manager.start(spec(1))
    state = wait_status(redis_client, 1, AccountStatus.RUNNING)
    connection = redis_client.get("fake:connected:+15550000001")
    redis_client.delete(keys.worker_lease("w1", 1), keys.account_state("w1", 1))  # as after a Redis restart
    assert leases.renew(redis_client, manager.held_accounts(), manager.holder, 5) == []
    assert leases.holder_of(redis_client, 1, manager.holder) == manager.holder
    manager.reassert()
    again = wait_status(redis_client, 1, AccountStatus.RUNNING)
    assert again.run == state.run and redis_client.get("fake:connected:+15550000001") == connection


def test_the_report_lists_what_runs_by_status(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script
) -> None:
    script.set("+15550000002", connect="flood:300")
    manager = make_manager()
    manager.start(spec(1))
    manager.start(spec(2))
    wait_status(redis_client, 1, AccountStatus.RUNNING)
    wait_status(redis_client, 2, AccountStatus.FLOOD_WAIT)
    assert json.loads(manager.report_json()) == {"flood_wait": [2], "running": [1]}
    manager.stop(1)
    assert json.loads(manager.report_json()) == {"flood_wait": [2]}


def test_a_worker_remembers_what_it_runs_and_a_new_process_resumes_it(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    box = SecretBox("k" * 40)
    first = make_manager("w1")
    runtime = WorkerRuntime(WorkerInfo("w1", "", "", 1, "", 0, "inst-w1"), 2, first, WorkerSecrets.with_secret_key(box))
    for account_id in (1, 2, 3):
        assert runtime.start({"spec": wire_spec(box, account_id)})["ok"]
        wait_status(redis_client, account_id, AccountStatus.RUNNING)
    runtime.stop({"account_id": 3})  # stopped on purpose: not to be resumed
    wait_until(lambda: not redis_client.hexists(keys.worker_specs("w1"), "3"), 3, message="3 forgotten")
    assert sorted(redis_client.hkeys(keys.worker_specs("w1"))) == ["1", "2"]
    stored = " ".join(redis_client.hvals(keys.worker_specs("w1")))
    assert "15550000001" not in stored and API_HASH not in stored  # encrypted, as in task payloads
    redis_client.hset(keys.worker_specs("w1"), "9", "not a spec")
    first.shutdown(timeout=5)  # the process ends; its registry stays
    second = AccountManager(fake_telegram.factory, redis_client, "w1", "inst-2", 2, 5.0)
    second.open()
    try:
        again = WorkerRuntime(
            WorkerInfo("w1", "", "", 1, "", 0, "inst-2"), 2, second, WorkerSecrets.with_secret_key(box)
        )
        assert again.resume_from_registry() == 2
        for account_id in (1, 2):
            assert wait_status(redis_client, account_id, AccountStatus.RUNNING).worker == "w1"
        assert 3 not in second.runners
        assert not redis_client.hexists(keys.worker_specs("w1"), "9")  # unusable entries are dropped
    finally:
        second.shutdown(timeout=5)


def test_a_dropped_connection_keeps_its_cause_and_leaves_no_unretrieved_exception(
    make_manager: Callable[..., AccountManager], redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    class Dropping(fake_telegram.FakeClient):
        async def connect(self) -> None:
            await super().connect()
            loop = asyncio.get_running_loop()
            future = self._disconnected
            assert future is not None
            phone = self.spec.phone
            loop.call_later(0.2, lambda: future.done() or future.set_exception(ConnectionResetError(104, phone)))

    manager = AccountManager(Dropping, redis_client, "w1", "inst-w1", 1, 5.0)
    manager.open()
    try:
        manager.start(spec(1))
        wait_status(redis_client, 1, AccountStatus.RUNNING)
        state = wait_status(redis_client, 1, AccountStatus.ERROR, timeout=5)
        assert state.detail.startswith("network: the connection was reset"), state.detail
        assert "15550000001" not in state.detail
    finally:
        manager.shutdown(timeout=5)
    gc.collect()
    assert "never retrieved" not in caplog.text


def test_error_details_are_words_with_no_bytes_and_no_phone_numbers() -> None:
    from telethon import errors

    unknown = errors.TypeNotFoundError(0xDEADBEEF, b"\x01\x02+79991234567 Ivan Petrov")
    assert "unknown constructor" in failures.describe_error(unknown).text
    rpc = errors.RPCError(request=None, message="PHONE_NUMBER_INVALID +79991234567", code=400)
    said = failures.describe_error(rpc)
    assert said.text == "Telegram error 400 PHONE_NUMBER_INVALID" and said.code == "telegram_error"
    assert "79991234567" not in said.encode()
    weird = RuntimeError("failed for +7 (999) 123-45-67: b'\\x00\\xffsecret'")
    coded = failures.classify(weird).detail
    text = coded.text + coded.encode()
    assert "999" not in text and "secret" not in text and "\\x" not in text, text


def test_a_parked_account_stopped_meanwhile_by_the_control_plane_is_not_resumed(
    make_manager: Callable[..., AccountManager], redis_client: Redis
) -> None:
    box = SecretBox("k" * 40)
    manager = make_manager("w1")
    runtime = WorkerRuntime(
        WorkerInfo("w1", "", "", 1, "", 0, "inst-w1"), 2, manager, WorkerSecrets.with_secret_key(box)
    )
    for account_id in (1, 2):
        assert runtime.start({"spec": wire_spec(box, account_id)})["ok"]
        wait_status(redis_client, account_id, AccountStatus.RUNNING)
    manager.fence(detail("no_redis", seconds=3.0))
    wait_until(lambda: not manager.runners, 3, message="all clients stopped")
    redis_client.hdel(keys.worker_specs("w1"), "2")  # `accounts stop 2` while this worker was cut off
    assert manager.resume_parked() == 1
    wait_status(redis_client, 1, AccountStatus.RUNNING)
    assert 2 not in manager.runners and manager.parked == {}


def test_a_stop_does_not_wait_for_a_connect_in_flight(
    make_manager: Callable[..., AccountManager], redis_client: Redis, script: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart onto another proxy stops the account while its connect through the dead one is still being
    retried: the stop abandons the connect instead of waiting it out."""
    monkeypatch.setattr(clients, "CONNECT_TIMEOUT", 600.0)
    script.set("+15550000001", delay=600)  # a connect that does not end
    manager = make_manager()
    manager.start(spec(1))
    wait_until(lambda: (s := live(redis_client, 1)) and s.coded == detail("connecting"), 30, message="connecting")
    outcome = manager.stop(1)  # waits up to STOP_TIMEOUT for the runner to end
    assert outcome.ok and manager.runner_of(1) is None, "the stop waited out its timeout: the connect held it"
    state = wait_status(redis_client, 1, AccountStatus.STOPPED, timeout=30)
    assert state.coded == detail("stopped")


def test_no_account_reads_running_once_its_client_has_let_go(
    redis_client: Redis, script: Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client disconnects before its runner's final status is written (at shutdown, only once every runner
    has stopped): what the account shows at the moment its client lets go must already not be "running"."""
    seen_at_disconnect: dict[int, str] = {}
    release = fake_telegram.FakeClient._release

    def recording_release(self: fake_telegram.FakeClient) -> None:
        state = live(redis_client, self.spec.account_id)
        seen_at_disconnect.setdefault(self.spec.account_id, state.status if state else "none")
        release(self)

    monkeypatch.setattr(fake_telegram.FakeClient, "_release", recording_release)
    manager = AccountManager(fake_telegram.factory, redis_client, "w1", "inst-w1", 2, 5.0)
    manager.open()
    for account_id in range(1, 7):
        manager.start(spec(account_id))
    for account_id in range(1, 7):
        wait_status(redis_client, account_id, AccountStatus.RUNNING, timeout=30)
    manager.stop(1)  # an admin's stop
    manager.shutdown(timeout=30)  # the worker going away with the rest
    assert set(seen_at_disconnect) == set(range(1, 7))
    assert all(status != AccountStatus.RUNNING for status in seen_at_disconnect.values()), seen_at_disconnect
