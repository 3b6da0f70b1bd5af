"""API app credentials as a pool: `run_cli.py apps add | list | remove`, and logins and imports without credentials
of their own drawing the least loaded app under its cap — a cap that parallel imports cannot beat, on SQLite and
PostgreSQL alike. The hash is stored encrypted and never shown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import func, select, text

from backend.accounts_service import AccountService
from backend.apps_service import AppsService
from backend.cli import cli
from backend.control_plane import ControlPlane
from backend.errors import AccountError
from celery_app import presence
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from common.errors import FleetError
from database.accounts import delete_account, get_account
from database.models import Account, ApiAppClaim, FleetEvent
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY

HASH_A = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb"
HASH_B = "0123456789abcdef0123456789abcdef"
OWN_HASH = "fedcba9876543210fedcba9876543210"
BOX = SecretBox(TEST_SECRET_KEY)


def phone(n: int) -> str:
    return f"+1555{n:07d}"


@pytest.fixture
def plane(database_url: str, redis_url: str) -> Iterator[ControlPlane]:
    running = ControlPlane(redis_url, database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
    running.fleet.add_worker("w1", "10.0.0.1", "test")
    yield running
    running.close()


def imported(accounts: AccountService, n: int, *credentials: Any) -> Account:
    view = accounts.import_session(
        "w1", *credentials, session_string=session_for(phone(n)), phone=phone(n), actor="test"
    )
    with accounts.sessions() as session:
        return get_account(session, view.id)


def code_of(call: Any) -> str:
    with pytest.raises(FleetError) as raised:
        call()
    return raised.value.code


# --- choosing ----------------------------------------------------------------------------------------------


def test_imports_take_the_least_loaded_app_under_its_cap(plane: ControlPlane) -> None:
    accounts, apps = plane.accounts, plane.apps
    assert code_of(lambda: imported(accounts, 1)) == "app_pool_empty"
    first = apps.add(1001, HASH_A, name="first", max_accounts=3, actor="test")
    second = apps.add("1002", HASH_B.upper(), max_accounts=1, actor="test")
    given = [imported(accounts, n) for n in range(1, 5)]
    # A tie goes to the older app; then the lighter one, until it is full.
    assert [a.app_id for a in given] == [first.id, second.id, first.id, first.id]
    assert [a.api_id for a in given] == [1001, 1002, 1001, 1001]
    assert [BOX.decrypt(a.api_hash_enc) for a in given] == [HASH_A, HASH_B, HASH_A, HASH_A]
    with pytest.raises(FleetError) as exhausted:
        imported(accounts, 5)
    assert exhausted.value.code == "app_pool_exhausted" and "every API app in the pool (2)" in str(exhausted.value)
    loads = {view.api_id: (view.accounts, view.full) for view in apps.list()}
    assert loads == {1001: (3, True), 1002: (1, True)}
    assert not accounts.app_pool_has_room()
    # Credentials of its own still come in, outside the pool.
    own = imported(accounts, 6, 777, OWN_HASH)
    assert own.app_id is None and own.api_id == 777 and BOX.decrypt(own.api_hash_enc) == OWN_HASH


def test_an_api_id_alone_names_an_app_of_the_pool_and_a_pooled_pair_counts_against_its_cap(
    plane: ControlPlane,
) -> None:
    accounts, apps = plane.accounts, plane.apps
    app = apps.add(2001, HASH_A, max_accounts=2, actor="test")
    assert code_of(lambda: imported(accounts, 1, 9999)) == "app_not_in_pool"
    assert code_of(lambda: imported(accounts, 1, None, HASH_A)) == "api_id"
    assert code_of(lambda: imported(accounts, 1, 2001, HASH_B)) == "app_hash_mismatch"
    assert imported(accounts, 1, 2001).app_id == app.id
    assert imported(accounts, 2, "2001", HASH_A.upper()).app_id == app.id  # the pool's pair is the pool's app
    assert code_of(lambda: imported(accounts, 3, 2001)) == "app_full"
    assert code_of(lambda: imported(accounts, 3, 2001, HASH_A)) == "app_full"
    assert [view.accounts for view in apps.list()] == [2]


def test_parallel_imports_never_push_an_app_over_its_cap(plane: ControlPlane) -> None:
    """Twenty imports at once against caps of 6 and 4: exactly ten get in, each app filled to its cap, the rest
    are told the pool is exhausted — on SQLite (one writer at a time) and PostgreSQL (row locks)."""
    accounts, apps = plane.accounts, plane.apps
    big, small = apps.add(3001, HASH_A, max_accounts=6, actor="t"), apps.add(3002, HASH_B, max_accounts=4, actor="t")
    start = threading.Barrier(20)
    outcomes: dict[int, str] = {}

    def one(n: int) -> None:
        start.wait()
        try:
            imported(accounts, 100 + n)
            outcomes[n] = "ok"
        except FleetError as error:
            outcomes[n] = error.code

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(outcomes.values()) == ["app_pool_exhausted"] * 10 + ["ok"] * 10
    with plane.sessions() as session:
        carried = dict(session.execute(select(Account.app_id, func.count()).group_by(Account.app_id)).all())
    assert carried == {big.id: 6, small.id: 4}


def test_the_database_refuses_a_row_over_the_cap_whoever_writes_it(plane: ControlPlane) -> None:
    accounts, apps = plane.accounts, plane.apps
    app = apps.add(4001, HASH_A, max_accounts=1, actor="t")
    imported(accounts, 1)
    own = imported(accounts, 2, 4002, HASH_B)
    with pytest.raises(Exception, match="api_app_cap"), plane.sessions.begin() as session:
        session.execute(text("UPDATE accounts SET app_id = :app WHERE id = :id"), {"app": app.id, "id": own.id})
    with pytest.raises(Exception, match="api_app_cap"), plane.sessions.begin() as session:
        session.add(ApiAppClaim(app_id=app.id, login_id="x" * 32, expires_at=own.created_at))


# --- the CLI -----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, plane: ControlPlane, redis_url: str) -> ControlPlane:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", plane.database_url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    return plane


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_apps_add_list_remove_from_the_cli_never_show_the_hash(cli_env: ControlPlane) -> None:
    plane = cli_env
    code, out, err = run(
        "apps", "add", "5001", "--hash-from-stdin", "--max-accounts", "2", "--name", "main", stdin=HASH_A
    )
    assert code == 0, err
    assert out.strip() == "app 1 added: API ID 5001 (main), at most 2 account(s)"
    code, added, _ = run("apps", "add", "5002", "--hash-from-stdin", "--json", stdin=HASH_B + "\n")
    assert code == 0 and json.loads(added)["api_id"] == 5002 and "hash" not in added
    again = run("apps", "add", "5001", "--hash-from-stdin", stdin=HASH_B)
    assert again[0] == 1 and "API ID 5001 is in the pool already (app 1)" in again[2]
    no_tty = run("apps", "add", "5003")
    assert no_tty[0] == 2 and "no terminal to ask for the API hash on" in no_tty[2]
    bad = run("apps", "add", "5003", "--hash-from-stdin", stdin="not a hash")
    assert bad[0] == 1 and "32 hexadecimal characters" in bad[2]
    assert run("apps", "add", "5003", "--hash-from-stdin", "--max-accounts", "0", stdin=HASH_A)[0] == 2
    imported(plane.accounts, 1)
    imported(plane.accounts, 2)
    code, out, _ = run("apps", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(a["id"], a["api_id"], a["name"], a["accounts"], a["max_accounts"], a["full"]) for a in listed] == [
        (1, 5001, "main", 1, 2, False),
        (2, 5002, "", 1, None, False),
    ]
    code, table, _ = run("apps", "list")
    assert table.splitlines()[0].split() == ["ID", "API", "ID", "NAME", "ACCOUNTS", "CAP"]
    assert "no cap" in table
    assert run("apps", "add", "5003", "--hash-from-stdin", stdin=HASH_A)[0] == 0
    assert code_of(lambda: imported(plane.accounts, 3, 5003, HASH_B)) == "app_hash_mismatch"
    assert run("apps", "set", "3", "--max-accounts", "1", "--name", "spare")[:2] == (
        0,
        "app 3 (API ID 5003, spare): cap 1, carries 0\n",
    )
    assert run("apps", "set", "3")[0] == 2 and run("apps", "set", "3", "--no-cap", "--max-accounts", "2")[0] == 2
    code, changed, _ = run("apps", "set", "2", "--max-accounts", "1", "--json")  # down to its load: full
    assert code == 0 and json.loads(changed)["full"] is True and run("apps", "set", "9", "--no-cap")[0] == 1
    assert run("apps", "remove", "3", "--yes")[0] == 0
    busy = run("apps", "remove", "1")
    assert busy[0] == 1 and "app 1 still carries 1 account(s)" in busy[2]
    assert run("apps", "remove", "99")[0] == 1
    with plane.sessions.begin() as session:
        for account in session.scalars(select(Account).where(Account.app_id == 1)):
            delete_account(session, account, "test")
    assert run("apps", "remove", "1", "--yes")[:2] == (0, "app 1 (API ID 5001) removed\n")
    code, out, _ = run("apps", "list", "--json")
    assert [a["api_id"] for a in json.loads(out)] == [5002]
    with plane.sessions() as session:
        stored = session.execute(text("SELECT api_hash_enc FROM api_apps")).scalars().all()
        events = " ".join(e.detail + e.detail_code for e in session.scalars(select(FleetEvent)))
    assert [BOX.decrypt(token) for token in stored] == [HASH_B]
    everything = " ".join(str(run(*args)) for args in (("apps", "list"), ("apps", "list", "--json"))) + events
    assert HASH_A not in everything and HASH_B not in everything
    if plane.database_url.startswith("sqlite:///"):  # nowhere in the database's files in clear
        database = Path(plane.database_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):
            assert HASH_A.encode() not in path.read_bytes() and HASH_B.encode() not in path.read_bytes()


# --- logins ------------------------------------------------------------------------------------------------


class StubDispatcher:
    """A worker that sends every code and accepts every login (the real one is in the end-to-end test)."""

    sealer = None  # sends SECRET_KEY's tokens as they are, as a dispatcher without a sealer does

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def call(self, worker: str, task: Any, payload: Any, timeout: float) -> dict[str, Any]:
        self.sent.append(payload)
        if hasattr(payload, "phone_enc"):
            return {"state": "code_sent"}
        return {"state": "authorized", "session_enc": BOX.encrypt(session_for(f"login-{len(self.sent)}")), "user_id": 7}

    def send(self, worker: str, task: Any, payload: Any) -> None:
        self.sent.append(payload)


def test_a_login_claims_its_app_until_it_ends(plane: ControlPlane, redis_client: Redis) -> None:
    presence.register(
        redis_client, WorkerInfo("w1", "10.0.0.1", "h", 1, "0", presence.server_time(redis_client), "i"), 60
    )
    dispatcher = StubDispatcher()
    accounts = AccountService(redis_client, plane.sessions, dispatcher, 2.0, lambda: BOX)  # type: ignore[arg-type]
    apps = AppsService(plane.sessions, lambda: BOX)
    app = apps.add(6001, HASH_A, max_accounts=1, actor="t")
    first = accounts.begin_login("w1", phone(1), actor="t")
    assert dispatcher.sent[0].api_id == 6001 and BOX.decrypt(dispatcher.sent[0].api_hash_enc) == HASH_A
    assert [(v.accounts, v.logins, v.full) for v in apps.list()] == [(0, 1, True)]
    # The login in progress holds the only place: another one is refused, an import too.
    assert code_of(lambda: accounts.begin_login("w1", phone(2), actor="t")) == "app_pool_exhausted"
    assert code_of(lambda: imported(accounts, 3)) == "app_pool_exhausted"
    accounts.cancel_login(first.login_id)
    assert [(v.accounts, v.logins) for v in apps.list()] == [(0, 0)]
    second = accounts.begin_login("w1", phone(2), actor="t")
    done = accounts.submit_code(second.login_id, "1 2 3 4 5")
    assert done.state == "authorized" and done.account is not None
    with plane.sessions() as session:
        account = get_account(session, done.account.id)
        assert (account.app_id, account.api_id) == (app.id, 6001) and account.session_lookup
    assert [(v.accounts, v.logins) for v in apps.list()] == [(1, 0)]
    # The account logs in again with its own app, which it holds already: no second place is needed.
    again = accounts.begin_login("w1", phone(2), actor="t")
    assert accounts.submit_code(again.login_id, "1 2 3 4 5").state == "authorized"
    named = accounts.begin_login("w1", phone(2), "6001", actor="t")  # its app named, full: its place is its own
    assert accounts.submit_code(named.login_id, "1 2 3 4 5").state == "authorized"
    assert [(v.accounts, v.logins) for v in apps.list()] == [(1, 0)]
    # An abandoned login's claim is given back once it expires.
    apps.add(6002, HASH_B, max_accounts=1, actor="t")
    accounts.begin_login("w1", phone(3), actor="t")
    assert code_of(lambda: accounts.begin_login("w1", phone(4), actor="t")) == "app_pool_exhausted"
    with plane.sessions.begin() as session:
        session.execute(text("UPDATE api_app_claims SET expires_at = '2000-01-01 00:00:00'"))
    accounts.begin_login("w1", phone(4), actor="t")


def test_login_with_no_app_and_an_empty_pool_says_so(plane: ControlPlane, redis_client: Redis) -> None:
    presence.register(
        redis_client, WorkerInfo("w1", "10.0.0.1", "h", 1, "0", presence.server_time(redis_client), "i"), 60
    )
    accounts = AccountService(redis_client, plane.sessions, StubDispatcher(), 2.0, lambda: BOX)  # type: ignore[arg-type]
    with pytest.raises(FleetError) as raised:
        accounts.begin_login("w1", phone(1), actor="t")
    assert raised.value.code == "app_pool_empty" and "run_cli.py apps add" in str(raised.value)
    with pytest.raises(AccountError, match="needs its API ID"):
        accounts.begin_login("w1", phone(1), None, HASH_A, actor="t")


# --- the bot, the real processes ---------------------------------------------------------------------------


def test_the_bot_wizard_skips_the_api_steps_while_the_pool_has_room(redis_url: str, sqlite_url: str) -> None:
    from tests.support.bot_harness import BotHarness

    harness = BotHarness(redis_url, sqlite_url, frozenset({111}), offline_after=60)  # it beats once, below
    try:
        harness.services.fleet.add_worker("w1", "10.0.0.1", "test")
        register = harness.services.accounts.redis
        presence.register(register, WorkerInfo("w1", "10.0.0.1", "h", 1, "0", presence.server_time(register), "i"), 60)
        AppsService(harness.services.accounts.sessions, lambda: BOX).add(7001, HASH_A, max_accounts=1, actor="t")
        chat = harness.chat(111, "en")
        chat.send("/add")
        chat.click("w1")
        chat.click("📦 Import a session")
        assert "Steps 4–5 skipped" in chat.send(phone(1)).params["text"]
        harness.core.wait_for(lambda c: c.method == "sendMessage" and "session string" in c.params.get("text", ""))
        chat.send(session_for(phone(1)))
        harness.core.wait_for(lambda c: c.method == "sendMessage" and "✅ Account added" in c.params.get("text", ""))
        with harness.services.accounts.sessions() as session:
            assert session.scalar(select(Account.api_id)) == 7001
        # The pool is full now: the wizard asks for an API ID as before.
        chat.send("/add")
        chat.click("w1")
        chat.click("📦 Import a session")
        assert "API ID" in chat.send(phone(2)).params["text"]
    finally:
        harness.close()


@pytest.mark.processes
def test_a_login_from_the_cli_takes_an_app_of_the_pool(stack: Any, telegram: Any) -> None:
    from tests.test_accounts_processes import online

    telegram.set(phone(1), login={"code": "54321"})
    telegram.set(phone(2), login={"code": "54321"})
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    added = stack.cli("apps", "add", "8001", "--hash-from-stdin", "--max-accounts", "1", input_text=HASH_A + "\n")
    assert added.returncode == 0, added.stderr
    logged = stack.cli("accounts", "login", "--worker", "w1", "--phone", phone(1), input_text="5 4 3 2 1\n")
    assert logged.returncode == 0, logged.stderr
    assert "logged in: account 1" in logged.stdout
    assert [(a["api_id"], a["accounts"], a["full"]) for a in stack.cli_json("apps", "list")] == [(8001, 1, True)]
    refused = stack.cli("accounts", "login", "--worker", "w1", "--phone", phone(2), input_text="5 4 3 2 1\n")
    assert refused.returncode == 1 and "every API app in the pool (1) carries as many accounts" in refused.stderr
    for result in (added, logged, refused):
        assert HASH_A not in result.stdout + result.stderr


def test_the_hash_is_asked_for_without_echo_on_a_terminal(stack: Any) -> None:
    import os
    import pty
    import subprocess
    import sys
    import time

    from tests.support.stack import ROOT

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_cli.py"), "apps", "add", "9001", "--name", "tty"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=stack.workdir,
        env=stack.env,
        start_new_session=True,
    )
    os.close(follower)
    transcript = b""
    try:
        deadline = time.monotonic() + 60
        while b"API hash (not shown)" not in transcript and time.monotonic() < deadline:
            transcript += os.read(leader, 1024)
        os.write(leader, HASH_A.encode() + b"\n")
        while process.poll() is None or transcript.count(b"\n") < 2:
            try:
                chunk = os.read(leader, 1024)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            transcript += chunk
        assert process.wait(60) == 0, transcript
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    assert b"app 1 added: API ID 9001 (tty), no cap" in transcript
    assert HASH_A.encode() not in transcript
