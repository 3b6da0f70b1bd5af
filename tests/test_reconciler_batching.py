"""The control plane's writes and messages at fleet scale, against a real Redis and both databases.

A scan's corrections are applied set-wise (one UPDATE, one INSERT of their events) and must leave exactly the
rows and events that applying them one by one leaves; its starts go one message per worker, in one Redis
pipeline, with no result to wait for; the garbage collector it pauses is back on after it. A worker registers
a started account once its answer is out, and takes the entry back if the client ended meanwhile.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from backend.account_sync import AccountSync
from backend.dispatch import TaskDispatcher
from backend.reconciler import Reconciler
from celery_app import keys
from celery_app.account_state import AccountStatus
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from common.details import detail, free
from database import events as events_db
from database.account_status import StatusCorrection, correct_account_statuses
from database.engine import open_database
from database.events import NewEvent, account_subject, record_events
from database.models import Account, FleetEvent, utcnow
from tests.support import fake_telegram
from tests.support.fake_telegram import session_for
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import import_account
from tests.test_level_triggered import OFFLINE_AFTER, beat, queued, worker
from worker.account_manager import AccountManager
from worker.runtime import WorkerRuntime
from worker.secrets import WorkerSecrets

API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return open_database(database_url)[1]


def new_accounts(sessions: sessionmaker[Session], count: int, worker_id: int | None = None) -> list[int]:
    with sessions.begin() as session:
        rows = [
            Account(
                phone_enc="p" * 40,
                phone_lookup=uuid.uuid4().hex,
                phone_masked="+1 *** ***-00-00",
                api_id=1,
                api_hash_enc="h" * 40,
                session_enc="s" * 40,
                worker_id=worker_id,
                desired_state="running",
                status="running",
                status_detail="",
            )
            for _ in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def corrections_for(ids: list[int], at: datetime) -> list[StatusCorrection]:
    """A mix of what a scan writes: lost with the worker named, running again with no words, a flood wait with
    its end, words that are not ASCII, and several moments."""
    made = []
    for index, account_id in enumerate(ids):
        kind = index % 4
        moment = at + timedelta(seconds=index % 3)
        if kind == 0:
            made.append(StatusCorrection(account_id, "lost", detail("not_running_on", worker=f"w{index}"), moment))
        elif kind == 1:
            made.append(StatusCorrection(account_id, "running", None, moment))
        elif kind == 2:
            until = moment + timedelta(seconds=300)
            made.append(StatusCorrection(account_id, "flood_wait", free("ждать «5 минут»"), moment, until))
        else:
            made.append(StatusCorrection(account_id, "error", detail("worker_offline", worker="сервер-1"), moment))
    return made


def rows_of(sessions: sessionmaker[Session], ids: list[int]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        accounts = session.scalars(select(Account).where(Account.id.in_(ids)).order_by(Account.id)).all()
        return [(a.status, a.status_detail, a.status_code, a.status_changed_at, a.flood_wait_until) for a in accounts]


def events_of(sessions: sessionmaker[Session], ids: list[int]) -> list[tuple[Any, ...]]:
    subjects = [account_subject(i) for i in ids]
    with sessions() as session:
        found = session.scalars(select(FleetEvent).where(FleetEvent.subject.in_(subjects))).all()
        by_subject = {e.subject: e for e in found}
        assert len(by_subject) == len(found) == len(ids)  # one event each
        return [
            (e.kind, e.detail, e.detail_code, e.actor, e.created_at, e.last_at, e.repeat_count)
            for e in (by_subject[s] for s in subjects)
        ]


def counted_statements(sessions: sessionmaker[Session]) -> list[str]:
    statements: list[str] = []

    @event.listens_for(sessions.kw["bind"], "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]))

    return statements


def test_corrections_applied_set_wise_leave_the_rows_and_events_one_by_one_leaves(
    sessions: sessionmaker[Session],
) -> None:
    at = utcnow()
    one_by_one = new_accounts(sessions, 40)
    set_wise = new_accounts(sessions, 40)
    untouched = new_accounts(sessions, 5)
    for correction in corrections_for(one_by_one, at):
        with sessions.begin() as session:
            correct_account_statuses(session, [correction])
    statements = counted_statements(sessions)
    with sessions.begin() as session:
        correct_account_statuses(session, corrections_for(set_wise, at))
    assert [s for s in statements if s.startswith("UPDATE")] == ["UPDATE accounts SET"]  # one, for all 40
    assert [s for s in statements if s.startswith("INSERT")] == ["INSERT INTO fleet_events"]
    assert rows_of(sessions, set_wise) == rows_of(sessions, one_by_one)
    assert events_of(sessions, set_wise) == events_of(sessions, one_by_one)
    assert rows_of(sessions, set_wise)[2] == (
        "flood_wait",
        "ждать «5 минут»",
        free("ждать «5 минут»").encode(),
        at + timedelta(seconds=2),
        at + timedelta(seconds=302),
    )
    assert rows_of(sessions, untouched) == [("running", "", "", None, None)] * 5


def test_events_folded_by_the_thousand_are_deleted_and_inserted_in_bounded_statements(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole fleet corrected at once records one event per account, most folding into an earlier one: the
    statements that look them up and replace them are cut to stay within the databases' parameter limits."""
    monkeypatch.setattr(events_db, "_IDS_PER_STATEMENT", 7)
    base = utcnow()
    subjects = [account_subject(i) for i in range(1, 51)]
    said = detail("not_running_on", worker="w1")
    with sessions.begin() as session:
        record_events(session, [NewEvent("account.status", s, said, "backend", base) for s in subjects])
    statements = counted_statements(sessions)
    later = base + timedelta(seconds=30)
    with sessions.begin() as session:
        record_events(session, [NewEvent("account.status", s, said, "backend", later) for s in subjects])
    assert sum(s.startswith("SELECT") for s in statements) == 8  # 50 subjects, 7 a statement
    assert sum(s.startswith("DELETE") for s in statements) == 8
    assert sum(s.startswith("INSERT") for s in statements) == 1
    with sessions() as session:
        rows = session.execute(select(FleetEvent.subject, FleetEvent.repeat_count, FleetEvent.last_at)).all()
    assert sorted(rows) == sorted((s, 2, later) for s in subjects)


def test_a_churning_fleet_is_corrected_set_wise_and_started_one_message_per_worker(
    redis_client: Redis, database_url: str, redis_url: str
) -> None:
    sessions = open_database(database_url)[1]
    sync = AccountSync(TaskDispatcher(redis_url), lease_wait=5, cooldown=600)
    reconciler = Reconciler(redis_client, sessions, OFFLINE_AFTER, sync)
    names = [f"w{index}" for index in range(8)]
    fleet = {name: new_accounts(sessions, 10, worker(reconciler, name)) for name in names}
    for name, ids in fleet.items():
        beat(redis_client, name, dict.fromkeys(ids, "running"))
    reconciler.scan()
    statements = counted_statements(sessions)
    for round_index in (1, 2):  # each round a different tenth of every worker's accounts is missing
        for name, ids in fleet.items():
            beat(redis_client, name, {i: "running" for i in ids if i % 10 != round_index})
        statements.clear()
        result = reconciler.scan()
        assert result.accounts is not None
        assert result.accounts.corrected == (8 if round_index == 1 else 16)  # the missing, and those back
        assert result.accounts.started == 8
        assert [s for s in statements if s.startswith("UPDATE accounts")] == ["UPDATE accounts SET"]
        assert [s for s in statements if s.startswith("INSERT INTO fleet_events")] == ["INSERT INTO fleet_events"]
    for name, ids in fleet.items():
        messages = [json.loads(raw) for raw in redis_client.lrange(f"worker.{name}", 0, -1)]
        assert all(m["headers"]["ignore_result"] is True for m in messages)  # nobody waits for a scan's start
        started = [spec["account_id"] for _task, payload in queued(redis_client, name) for spec in payload["specs"]]
        assert sorted(started) == sorted(i for i in ids if i % 10 in (1, 2))  # one message each round
        assert len(messages) == 2
        with sessions() as session:
            statuses = dict(session.execute(select(Account.id, Account.status).where(Account.id.in_(ids))).all())
        assert statuses == {i: "lost" if i % 10 == 2 else "running" for i in ids}


def test_a_scan_leaves_the_garbage_collector_as_it_found_it(redis_client: Redis, database_url: str) -> None:
    sessions = open_database(database_url)[1]
    assert gc.isenabled()
    Reconciler(redis_client, sessions, OFFLINE_AFTER).scan()
    assert gc.isenabled()
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens there
    with pytest.raises(RedisConnectionError):
        Reconciler(unreachable, sessions, OFFLINE_AFTER).scan()
    assert gc.isenabled()
    gc.disable()
    try:
        Reconciler(redis_client, sessions, OFFLINE_AFTER).scan()
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- the worker: registered once the answer is out ------------------------------------------------------------


@pytest.fixture
def runtime(redis_client: Redis, script: Any) -> Iterator[WorkerRuntime]:
    manager = AccountManager(fake_telegram.factory, redis_client, "w1", "inst-w1", 2, 5.0)
    manager.open()
    try:
        yield WorkerRuntime(
            WorkerInfo("w1", "", "", 1, "", 0, "inst-w1"),
            2,
            manager,
            WorkerSecrets.with_secret_key(SecretBox("k" * 40)),
        )
    finally:
        manager.shutdown(timeout=5)


def start_payload(box: SecretBox, account_id: int) -> dict[str, Any]:
    phone = f"+1555000{account_id:04d}"
    spec = {
        "account_id": account_id,
        "phone_enc": box.encrypt(phone),
        "api_id": 12345,
        "api_hash_enc": box.encrypt(API_HASH),
        "session_enc": box.encrypt(session_for(phone)),
    }
    return {"spec": spec}


def registered(redis: Redis) -> list[str]:
    return sorted(redis.hkeys(keys.worker_specs("w1")))


def test_a_started_account_is_registered_after_the_answer_and_not_if_it_ended_meanwhile(
    runtime: WorkerRuntime, redis_client: Redis
) -> None:
    later: list[Callable[[], None]] = []
    assert runtime.start(start_payload(runtime.box.box, 1), after_answer=later.append)["ok"]
    assert runtime.start(start_payload(runtime.box.box, 2), after_answer=later.append)["ok"]
    assert registered(redis_client) == []  # the answers are out; the writes wait for them
    runtime.stop({"account_id": 2})  # stopped before its registration ran
    wait_until(lambda: 2 not in runtime.manager.runners, 5, message="2 stopped")
    for step in later:
        step()
    assert registered(redis_client) == ["1"]  # 2 is not resumed by a restart of this worker
    # Without a place to leave it (a direct call), the start registers before it returns.
    assert runtime.start(start_payload(runtime.box.box, 3))["ok"]
    assert registered(redis_client) == ["1", "3"]


def test_a_worker_registers_what_it_was_asked_to_start_once_it_has_answered(
    stack: Stack, telegram: Any, redis_client: Redis
) -> None:
    assert stack.cli("add", "w1", "--address", "127.0.0.1").returncode == 0
    stack.start_worker("w1")
    wait_until(lambda: redis_client.zscore(keys.HEARTBEATS, "w1"), 15, message="w1 heartbeats")
    account_id = import_account(stack, "w1", "+15550007001")
    started = stack.cli("accounts", "start", str(account_id))
    assert started.returncode == 0, started.stderr
    # No backend runs: only the worker's own step after its answer writes the registry.
    wait_until(lambda: redis_client.hexists(keys.worker_specs("w1"), str(account_id)), 10, message="registered")
    state = wait_until(
        lambda: redis_client.hget(keys.account_state("w1", account_id), "status") == AccountStatus.RUNNING.value,
        10,
        message="running",
    )
    assert state
