"""Accounts end to end: real workers (fake Telegram), backend, CLI and Redis; the chaos cases."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from backend.accounts_service import AccountService
from backend.dispatch import TaskDispatcher
from celery_app import keys
from celery_app.account_state import read_states
from celery_app.contract import AccountSpec, StartAccount, TaskName
from common.crypto import SecretBox
from database.engine import open_database
from tests.support.fake_telegram import VIOLATIONS, session_for
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until
from tests.support.tcp_proxy import TcpProxy
from tests.test_manager import Script

pytestmark = pytest.mark.processes
API_HASH = "0123456789abcdef0123456789abcdef"


def online(stack: Stack, *names: str) -> None:
    wait_until(
        lambda: all(stack.workers().get(n, {}).get("status") == "online" for n in names), 15, message=f"{names} online"
    )


def import_account(stack: Stack, worker: str, phone: str, *extra: str) -> int:
    result = stack.cli(
        "accounts",
        "import",
        "--worker",
        worker,
        "--session-string",
        session_for(phone),
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        "--phone",
        phone,
        *extra,
    )
    assert result.returncode == 0, result.stderr
    assert "the worker can read the session" in result.stdout or "not online" in result.stdout
    return int(result.stdout.split("imported account ")[1].split()[0])


def accounts(stack: Stack) -> dict[int, dict[str, Any]]:
    return {a["id"]: a for a in stack.cli_json("accounts", "list")}


def status_of(stack: Stack, account_id: int) -> tuple[str, str | None]:
    account = accounts(stack)[account_id]
    return account["status"], account["worker"]


def connected(redis: Redis, phone: str) -> str | None:
    return redis.get(f"fake:connected:{phone}")


def test_import_start_show_stop_from_the_cli(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", "+15550001001")
    checked = stack.cli("accounts", "show", str(account_id))
    assert checked.returncode == 0
    foreign = stack.cli(
        "accounts",
        "import",
        "--worker",
        "w1",
        "--session-string",
        session_for("+15550001002"),
        "--api-id",
        "1",
        "--api-hash",
        API_HASH,
        "--phone",
        "+15550001002",
        env={"SECRET_KEY": "another-secret-key-0123456789abcdefghijkl"},
    )
    # Its secrets would be sealed to w1 all the same; what is wrong is this CLI's key: the backend and the other
    # control-plane processes could not open what it stores.
    assert foreign.returncode == 0 and "warning: this process's SECRET_KEY is not the fleet's" in foreign.stderr
    assert "another SECRET_KEY" in foreign.stderr
    started = stack.cli("accounts", "start", str(account_id))
    assert started.returncode == 0, started.stderr
    assert "is running as @user1001" in started.stdout
    shown = stack.cli("accounts", "show", str(account_id))
    assert "+1 *** ***-10-01" in shown.stdout and "🟢 running" in shown.stdout and "stored (encrypted)" in shown.stdout
    document = stack.cli_json("accounts", "show", str(account_id))
    assert document["status"] == "running" and document["worker"] == "w1" and document["username"] == "user1001"
    everything = shown.stdout + json.dumps(document)
    assert (
        session_for("+15550001001") not in everything and API_HASH not in everything and "15550001001" not in everything
    )
    wait_until(lambda: stack.workers()["w1"]["accounts_running"] == 1, 5, message="counted on its worker")
    stopped = stack.cli("accounts", "stop", str(account_id))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert status_of(stack, account_id) == ("stopped", "w1")
    assert connected(redis_client, "+15550001001") is None


def test_login_from_the_cli_with_code_and_2fa(stack: Stack, telegram: Script, tmp_path: Path) -> None:
    telegram.set("+15550002002", login={"code": "54321", "password": "hunter2"})
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    result = stack.cli(
        "accounts",
        "login",
        "--worker",
        "w1",
        "--phone",
        "+1 555 000 2002",
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        input_text="1 1 1 1 1\n5 4 3 2 1\nwrong\nhunter2\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Type it with spaces, like 1 2 3 4 5" in result.stdout
    assert "the code is wrong" in result.stderr and "the 2FA password is wrong" in result.stderr
    # Piped input is not echoed: each prompt's line is ended, so an error is a line of its own.
    errors = result.stderr.splitlines()
    assert "the code is wrong; type it again, with spaces like 1 2 3 4 5" in errors
    assert "the 2FA password is wrong; try again" in errors
    assert "logged in: account 1 (+1 *** ***-20-02) @user2002 on w1" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    # At rest the session and the API hash are encrypted: not in the database file in clear.
    database = Path(stack.env["DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(database) as connection:
        session_enc, hash_enc = connection.execute("SELECT session_enc, api_hash_enc FROM accounts").fetchone()
    box = SecretBox(TEST_SECRET_KEY)
    assert box.decrypt(session_enc) == session_for("+15550002002") and box.decrypt(hash_enc) == API_HASH
    for path in database.parent.glob(database.name + "*"):
        raw = path.read_bytes()
        assert session_for("+15550002002").encode() not in raw and API_HASH.encode() not in raw


def test_bad_inputs_get_clear_errors_and_change_nothing(stack: Stack, telegram: Script) -> None:
    stack.start_worker("w1")
    online(stack, "w1")
    stack.cli("add", "w1", "--address", "x")  # recorded without a backend
    base = ["accounts", "import", "--worker", "w1", "--api-id", "12345", "--api-hash", API_HASH]
    cases = [
        (["--session-string", session_for("+15550003003"), "--phone", "12"], "invalid phone number"),
        (["--session-string", "1garbage", "--phone", "+15550003003"], "session string"),
        (["--session-string", session_for("+15550003003")], "phone number of the imported account is required"),
    ]
    for extra, message in cases:
        result = stack.cli(*base, *extra)
        assert result.returncode == 1 and message in result.stderr, (extra, result.stderr)
    bad_id = stack.cli(
        "accounts",
        "import",
        "--worker",
        "w1",
        "--api-id",
        "abc",
        "--api-hash",
        API_HASH,
        "--session-string",
        session_for("+15550003003"),
        "--phone",
        "+15550003003",
    )
    assert bad_id.returncode == 1 and "invalid API ID 'abc'" in bad_id.stderr
    bad_hash = stack.cli(
        "accounts",
        "import",
        "--worker",
        "w1",
        "--api-id",
        "1",
        "--api-hash",
        "nothex",
        "--session-string",
        session_for("+15550003003"),
        "--phone",
        "+15550003003",
    )
    assert bad_hash.returncode == 1 and "32 hexadecimal characters" in bad_hash.stderr
    bad_login = stack.cli(
        "accounts", "login", "--worker", "w1", "--phone", "call me", "--api-id", "1", "--api-hash", API_HASH
    )
    assert bad_login.returncode == 1 and "invalid phone number" in bad_login.stderr
    no_worker = stack.cli(
        *base, "--session-string", session_for("+15550003003"), "--phone", "+15550003003", "--worker", "ghost"
    )
    assert no_worker.returncode == 1 and "worker 'ghost' not found" in no_worker.stderr
    assert stack.cli_json("accounts", "list") == []
    assert stack.cli("accounts", "show", "99").stderr.strip() == "Error: account 99 not found"


def test_offline_or_deactivated_workers_refuse_or_wait(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    stack.start_backend()
    stack.cli("add", "later", "--address", "10.9.9.9")
    account_id = import_account(stack, "later", "+15550004004")
    refused = stack.cli("accounts", "start", str(account_id))
    assert refused.returncode == 1 and "worker 'later' is offline" in refused.stderr
    assert "start it when the worker is back" in refused.stderr
    queued = stack.cli("accounts", "start", str(account_id), "--when-back")
    assert queued.returncode == 0 and "will start when worker 'later' is back" in queued.stdout
    stack.start_worker("later")
    wait_until(lambda: status_of(stack, account_id) == ("running", "later"), 15, message="started when back")
    stack.cli("deactivate", "later")
    stack.cli("accounts", "stop", str(account_id))
    deactivated = stack.cli("accounts", "start", str(account_id))
    assert deactivated.returncode == 1 and "is deactivated" in deactivated.stderr


def test_kill_9_then_restart_resumes_the_accounts(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    stack.start_backend(interval=0.5)
    worker = stack.start_worker("w1")
    online(stack, "w1")
    ids = [import_account(stack, "w1", f"+1555000500{i}") for i in range(3)]
    for account_id in ids:
        assert stack.cli("accounts", "start", str(account_id), "--no-wait").returncode == 0
    wait_until(lambda: all(status_of(stack, i)[0] == "running" for i in ids), 10, message="all running")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    for i in range(3):  # Telegram notices the dead connections on its own
        redis_client.delete(f"fake:connected:+1555000500{i}")
    restarted = stack.start_worker("w1")
    # Telegram sees each account connected again, from the new process.
    wait_until(
        lambda: all(
            (connected(redis_client, f"+1555000500{i}") or "").startswith(f"{restarted.pid}:") for i in range(3)
        ),
        20,
        message="accounts resumed on the restarted worker",
    )
    wait_until(lambda: all(status_of(stack, i) == ("running", "w1") for i in ids), 10, message="recorded running")
    assert stack.workers()["w1"]["pid"] == restarted.pid
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def test_a_worker_cut_off_from_redis_stops_its_clients_before_its_leases_expire(
    stack: Stack, telegram: Script, redis_client: Redis, redis_server: Any
) -> None:
    proxy = TcpProxy(redis_server.port)
    try:
        stack.start_backend(interval=0.5)
        stack.start_worker("island", REDIS_URL=proxy.url())
        online(stack, "island")
        account_id = import_account(stack, "island", "+15550006006")
        assert stack.cli("accounts", "start", str(account_id)).returncode == 0
        assert connected(redis_client, "+15550006006")
        proxy.cut()
        cut_at = time.monotonic()
        lease_left = redis_client.pttl(keys.worker_lease("island", account_id)) / 1000
        assert lease_left > 0
        wait_until(lambda: connected(redis_client, "+15550006006") is None, 10, interval=0.02, message="client stopped")
        stopped_after = time.monotonic() - cut_at
        assert stopped_after < lease_left, (
            f"client stopped {stopped_after:.2f}s after the cut; lease had {lease_left:.2f}s"
        )
        # Back in touch: the account is resumed there, unasked.
        proxy.restore()
        wait_until(lambda: connected(redis_client, "+15550006006"), 20, message="resumed after reconnecting")
    finally:
        stack.shutdown()
        proxy.close()
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def in_process_service(stack: Stack) -> AccountService:
    """The accounts service the CLI uses, in this process, for tests that drive many actions at once."""
    _engine, sessions = open_database(stack.env["DATABASE_URL"])
    redis = Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    box = SecretBox(TEST_SECRET_KEY)
    return AccountService(redis, sessions, TaskDispatcher(stack.env["REDIS_URL"]), 2.0, lambda: box)


def _spec_payload(account_id: int, phone: str) -> StartAccount:
    box = SecretBox(TEST_SECRET_KEY)
    spec = AccountSpec(
        account_id=account_id,
        phone_enc=box.encrypt(phone),
        api_id=12345,
        api_hash_enc=box.encrypt(API_HASH),
        session_enc=box.encrypt(session_for(phone)),
    )
    return StartAccount(spec=spec)


def test_two_workers_told_to_start_the_same_account_run_it_once(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    stack.start_worker("w1")
    stack.start_worker("w2")
    online(stack, "w1", "w2")
    dispatcher = TaskDispatcher(stack.env["REDIS_URL"])
    # Two orders no control plane would give (it gives an account to one worker: `leases.assign`), sent without
    # an assignment: the workers' own exclusion decides.
    dispatcher._assign = lambda _messages: None  # type: ignore[method-assign]
    payload = _spec_payload(77, "+15550007007")
    answers: dict[str, dict[str, Any]] = {}

    def ask(name: str) -> None:
        answers[name] = dispatcher.call(name, TaskName.START_ACCOUNT, payload, 15)

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    oks = [name for name, answer in answers.items() if answer["ok"]]
    assert len(oks) == 1, answers
    loser = "w2" if oks == ["w1"] else "w1"
    assert answers[loser]["detail"] == f"refused: the account is running on worker '{oks[0]}'"
    state = wait_until(
        lambda: (s := read_states(redis_client, {77: oks[0]}).get(77)) and s.status == "running" and s, 10
    )
    assert state.worker == oks[0]
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def test_moves_under_load_never_run_an_account_twice(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    telegram_delay = {"delay": 0.05}
    phones = [f"+155500080{i:02d}" for i in range(12)]
    for phone in phones:
        telegram.set(phone, **telegram_delay)
    stack.start_backend(interval=0.5)
    stack.start_worker("w1")
    stack.start_worker("w2")
    online(stack, "w1", "w2")
    ids = [import_account(stack, "w1", phone) for phone in phones]
    service = in_process_service(stack)
    for account_id in ids:
        service.start(account_id, "test")

    def all_on(target: str) -> bool:
        views = service.list_accounts()
        return all(v.status == "running" and v.worker == target for v in views) and len(views) == len(ids)

    wait_until(lambda: all_on("w1"), 20, message="all running on w1")

    def move_all(target: str) -> None:
        threads = [threading.Thread(target=service.move, args=(i, target, "test")) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    move_all("w2")
    wait_until(lambda: all_on("w2"), 30, message="all running on w2")
    move_all("w1")
    wait_until(lambda: all_on("w1"), 30, message="all back on w1")
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def test_forged_task_payloads_get_clear_errors(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    stack.start_worker("w1")
    online(stack, "w1")
    app = TaskDispatcher(stack.env["REDIS_URL"]).app
    forged = app.send_task(
        TaskName.START_ACCOUNT.value, args=[{"spec": {"account_id": -1}, "sudo": True}], queue="worker.w1"
    )
    answer = forged.get(timeout=10)
    assert answer["error"] == "invalid_payload" and "sudo: Extra inputs are not permitted" in answer["message"]
    empty_batch = app.send_task(TaskName.START_ACCOUNTS.value, args=[{"specs": []}], queue="worker.w1").get(timeout=10)
    assert empty_batch["error"] == "invalid_payload" and "specs" in empty_batch["message"]
    no_args = app.send_task(TaskName.STOP_ACCOUNT.value, args=[], queue="worker.w1").get(timeout=10)
    assert no_args["error"] == "invalid_payload"
    pickled = app.send_task(
        TaskName.SUBMIT_LOGIN_CODE.value, args=[{"login_id": "x" * 32, "code": "1"}], queue="worker.w1"
    )
    assert pickled.get(timeout=10)["error"] in ("invalid_code", "invalid_payload")
    assert redis_client.keys(keys.account_state("*", 0).replace(":0", ":*")) == []


@pytest.fixture(autouse=True)
def _no_leftover_clients(redis_client: Redis) -> Iterator[None]:
    yield
    assert redis_client.lrange(VIOLATIONS, 0, -1) == []


def test_a_folder_of_session_files_imports_in_bulk(stack: Stack, telegram: Script, tmp_path: Path) -> None:
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    stack.start_worker("w1")
    online(stack, "w1")
    stack.cli("add", "w1", "--address", "x")
    folder = tmp_path / "sessions"
    folder.mkdir()
    for index, name in enumerate(("79990000001", "79990000002", "acc-three", "nophone")):
        session = SQLiteSession(str(folder / f"{name}.session"))
        session.set_dc(2, "127.0.0.1", 443)
        session.auth_key = AuthKey(bytes([index + 1]) * 256)
        session.save()
        session.close()
    (folder / "acc-three.json").write_text(json.dumps({"phone": "+79990000003", "app_id": 777, "app_hash": "f" * 32}))
    (folder / "broken.session").write_bytes(b"not sqlite")
    result = stack.cli(
        "accounts", "import", "--worker", "w1", "--folder", str(folder), "--api-id", "12345", "--api-hash", API_HASH
    )
    assert result.returncode == 1  # one file could not be imported, and the exit code says so
    assert "imported 3 of 5 session file(s) onto w1" in result.stdout
    assert "skipped broken.session: not a Telethon .session file" in result.stdout
    assert "skipped nophone.session: no phone: name the file after it" in result.stdout
    assert "importing" in result.stderr  # the progress bar
    listed = {a["phone"]: a for a in stack.cli_json("accounts", "list")}
    assert set(listed) == {"+7 *** ***-00-01", "+7 *** ***-00-02", "+7 *** ***-00-03"}
    assert listed["+7 *** ***-00-03"]["api_id"] == 777  # from its sidecar


def test_start_all_and_stop_all_of_a_worker(stack: Stack, telegram: Script, redis_client: Redis) -> None:
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    ids = [import_account(stack, "w1", f"+1555000900{i}") for i in range(3)]
    started = stack.cli("accounts", "start-all", "--worker", "w1", "--yes")
    assert started.returncode == 0 and started.stdout.count("account") == 3
    wait_until(lambda: all(status_of(stack, i)[0] == "running" for i in ids), 15, message="all running")
    stopped = stack.cli("accounts", "stop-all", "--worker", "w1", "--yes")
    assert stopped.returncode == 0
    assert all(status_of(stack, i)[0] == "stopped" for i in ids)
    assert redis_client.keys("fake:connected:*") == []


def test_restart_reports_the_outcome_of_the_new_run_not_the_old_state(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", "+15550010010")
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    assert status_of(stack, account_id) == ("running", "w1")
    telegram.set("+15550010010", connect="unauthorized")  # revoked meanwhile: the restart will find out
    restarted = stack.cli("accounts", "restart", str(account_id))
    assert restarted.returncode == 1, restarted.stdout
    assert f"account {account_id} is unauthorized" in restarted.stderr
    telegram.set("+15550010010", connect="ok")
    again = stack.cli("accounts", "restart", str(account_id))
    assert again.returncode == 0 and f"account {account_id} is running as @user0010" in again.stdout
