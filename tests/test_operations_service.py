"""The operations service in-process, against a real Redis and both databases.

Workers are simulated in Redis as real ones publish themselves (registration, heartbeat, report) and as the
worker's executor writes where an operation stands (`keys.operation`); what the service sends is read back
from the worker's real Celery queue in Redis.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from backend.accounts_service import AccountService
from backend.dispatch import TaskDispatcher
from backend.errors import AccountError
from backend.operations_service import OperationsService
from celery_app import keys, presence, report
from celery_app.operations import OperationName, OperationStatus
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from database import workers as workers_db
from database.engine import open_database
from database.models import Account, AccountOperation, FleetEvent

OFFLINE_AFTER = 6.0
SECRET = "operations-test-secret-key-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def service(redis_client: Redis, database_url: str, redis_url: str) -> Iterator[OperationsService]:
    _engine, sessions = open_database(database_url)
    box = SecretBox(SECRET)
    dispatcher = TaskDispatcher(redis_url)
    accounts = AccountService(redis_client, sessions, dispatcher, OFFLINE_AFTER, lambda: box)
    yield OperationsService(redis_client, sessions, dispatcher, OFFLINE_AFTER, accounts, lost_after=0.0)


def add_worker(service: OperationsService, name: str, active: bool = True) -> int:
    with service.sessions.begin() as session:
        row = workers_db.add_worker(session, name, f"addr-{name}", "test")
        row.is_active = active
        session.flush()
        return row.id


def beat(redis: Redis, name: str, instance: str = "") -> None:
    info = WorkerInfo(name, "a", "h", 1, "0.1.0", 0, instance or f"inst-{name}")
    presence.register(redis, info, OFFLINE_AFTER, report=report.encode([]))


def add_account(service: OperationsService, worker_id: int | None, session_enc: str | None = "s" * 40) -> int:
    with service.sessions.begin() as session:
        row = Account(
            phone_enc="p" * 40,
            phone_lookup=uuid.uuid4().hex,
            phone_masked="+1 *** ***-00-00",
            api_id=1,
            api_hash_enc="h" * 40,
            session_enc=session_enc,
            worker_id=worker_id,
            desired_state="stopped",
            status="stopped",
            status_detail="",
        )
        session.add(row)
        session.flush()
        return row.id


def queued(redis: Redis, worker: str) -> list[dict[str, Any]]:
    """The operation requests waiting in a worker's Celery queue (kombu's JSON envelope, body base64)."""
    requests = []
    for raw in reversed(redis.lrange(f"worker.{worker}", 0, -1)):  # LPUSHed: the oldest is last
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if message["headers"]["task"] == "fleet.account.operate":
            requests.extend(args[0]["requests"])
    return requests


def worker_writes(redis: Redis, operation_id: int, status: str, worker: str, instance: str, **fields: Any) -> None:
    """What `worker.operator` writes into Redis as an operation moves on."""
    redis.hset(
        keys.operation(worker, operation_id),
        mapping={
            "status": status,
            "worker": worker,
            "instance": instance,
            "result": json.dumps(fields.get("result", {})),
            "error": fields.get("error", ""),
            "until": "",
            "at": "0",
        },
    )


def test_an_operation_is_sent_to_the_accounts_worker_and_its_outcome_recorded(
    service: OperationsService, redis_client: Redis
) -> None:
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    first, second = add_account(service, worker_id), add_account(service, worker_id)
    batch = service.submit(OperationName.CHECK, [first, second], {}, "test")
    assert [v.status for v in batch.operations] == ["queued", "queued"]
    sent = queued(redis_client, "w1")
    assert sorted(r["spec"]["account_id"] for r in sent) == [first, second]
    assert all(r["name"] == "check" for r in sent)
    one, two = (v.id for v in batch.operations)
    worker_writes(redis_client, one, "running", "w1", "inst-w1")
    worker_writes(
        redis_client,
        two,
        "done",
        "w1",
        "inst-w1",
        result={"authorized": True, "spam": "limited", "other_sessions": 1, "verdict": "limited"},
    )
    views = {v.account_id: v for v in service.progress(batch.batch)}
    assert views[first].status == "running" and not views[first].final
    assert views[second].status == "done" and views[second].summary.startswith("limited")
    account = service.accounts.get_account(second)
    assert account.check_verdict == "limited" and account.checked_at is not None
    assert "spam: limited" in account.check_summary
    assert account.check_result["spam"] == "limited"  # the result itself, for the bots to render


def test_accounts_that_cannot_run_it_are_refused_each_with_the_reason(
    service: OperationsService, redis_client: Redis
) -> None:
    live = add_worker(service, "live")
    beat(redis_client, "live")
    off = add_worker(service, "asleep", active=False)
    silent = add_worker(service, "silent")
    ids = [add_account(service, off), add_account(service, silent), add_account(service, live, session_enc=None)]
    views = {v.account_id: v for v in service.submit(OperationName.SESSIONS, ids, {}, "test").operations}
    assert "deactivated" in views[ids[0]].error and views[ids[0]].status == "failed"
    assert "offline" in views[ids[1]].error
    assert "no session" in views[ids[2]].error
    assert queued(redis_client, "live") == [] and queued(redis_client, "silent") == []


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (OperationName.PROFILE, {}, "nothing to change"),
        (OperationName.PROFILE, {"username": "no spaces allowed"}, "username"),
        (OperationName.PROFILE, {"photo": b"GIF89a not a photo"}, "not a JPEG or PNG"),
        (OperationName.PROFILE, {"bio": "x" * 71}, "bio"),
        (OperationName.TWO_FA, {"new_password": ""}, "must not be empty"),
        (OperationName.CHECK, {"first_name": "Anna"}, "takes no options"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_recorded(
    service: OperationsService, redis_client: Redis, name: OperationName, options: dict[str, Any], message: str
) -> None:
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    account_id = add_account(service, worker_id)
    with pytest.raises(AccountError) as refused:
        service.submit(name, [account_id], options, "test")
    assert message in str(refused.value)
    with service.sessions() as session:
        assert session.scalars(select(AccountOperation)).all() == []
    assert queued(redis_client, "w1") == []


def test_unknown_operation_names_the_known_ones(service: OperationsService) -> None:
    with pytest.raises(AccountError) as refused:
        service.operation_name("selfdestruct")
    assert "check, sessions, terminate-others, 2fa, profile" in str(refused.value)


def test_a_2fa_password_travels_encrypted_and_a_photo_is_sent_as_given(
    service: OperationsService, redis_client: Redis
) -> None:
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    account_id = add_account(service, worker_id)
    service.submit(OperationName.TWO_FA, [account_id], {"current_password": "old-pw", "new_password": "new-pw"}, "t")
    service.submit(OperationName.PROFILE, [account_id], {"photo": PNG, "username": "@anna_k"}, "t")
    twofa, profile = queued(redis_client, "w1")
    everything = json.dumps([twofa, profile]) + json.dumps(
        [row.params for row in service.sessions().scalars(select(AccountOperation))]
    )
    assert "old-pw" not in everything and "new-pw" not in everything
    assert SecretBox(SECRET).decrypt(twofa["params"]["new_password_enc"]) == "new-pw"
    assert base64.b64decode(profile["params"]["photo_b64"]) == PNG and profile["params"]["username"] == "anna_k"


def test_an_operation_whose_worker_went_away_is_sent_again_once_or_ends_as_worker_lost(
    service: OperationsService, redis_client: Redis
) -> None:
    w1 = add_worker(service, "w1")
    beat(redis_client, "w1", "first-life")
    moved, stranded = add_account(service, w1), add_account(service, w1)
    batch = service.submit(OperationName.CHECK, [moved, stranded], {}, "test")
    by_account = {v.account_id: v.id for v in batch.operations}
    for operation_id in by_account.values():
        worker_writes(redis_client, operation_id, "running", "w1", "first-life")
    redis_client.delete("worker.w1")
    # w1 restarts (a new instance): what it was running is gone with the old process.
    redis_client.delete(keys.worker_owner("w1"), keys.worker_report("w1"))
    beat(redis_client, "w1", "second-life")
    # ...and one account was moved meanwhile to w2, which is online.
    w2 = add_worker(service, "w2")
    beat(redis_client, "w2")
    with service.sessions.begin() as session:
        session.get(Account, moved).worker_id = w2
    assert service.reconcile() == 2
    assert [r["operation_id"] for r in queued(redis_client, "w2")] == [by_account[moved]]
    assert [r["operation_id"] for r in queued(redis_client, "w1")] == [by_account[stranded]]
    assert service.reconcile() == 0  # sent once: not again while the new worker has it
    # w1 goes away for good: what it had ends as "worker lost", never silently dropped.
    presence.forget(redis_client, "w1")
    service.reconcile()
    views = {v.account_id: v for v in service.progress(batch.batch)}
    assert views[stranded].status == OperationStatus.WORKER_LOST and "worker lost" in views[stranded].error
    assert views[moved].status == OperationStatus.QUEUED


def test_a_check_that_got_worse_is_recorded_for_the_alerts(service: OperationsService, redis_client: Redis) -> None:
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    account_id = add_account(service, worker_id)
    for verdict, extra in (("ok", {}), ("banned", {"banned": True})):
        batch = service.submit(OperationName.CHECK, [account_id], {}, "test")
        result = {"authorized": True, "spam": "free", "verdict": verdict, **extra}
        worker_writes(redis_client, batch.operations[0].id, "done", "w1", "inst-w1", result=result)
        service.progress(batch.batch)
    with service.sessions() as session:
        kinds = [(e.kind, e.detail) for e in session.scalars(select(FleetEvent).order_by(FleetEvent.id))]
    assert ("account.verdict_worse", "ok → banned") in kinds
    assert sum(1 for kind, _ in kinds if kind == "account.checked") == 2


def test_the_backend_records_an_outcome_as_soon_as_the_worker_reports_it(
    service: OperationsService, redis_client: Redis
) -> None:
    """The event path: an `operation.status` event of a finished operation is recorded without a scan."""
    from backend.reconciler import Reconciler
    from celery_app import events

    reconciler = Reconciler(redis_client, service.sessions, OFFLINE_AFTER, on_operations_finished=service.record)
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    account_id = add_account(service, worker_id)
    batch = service.submit(OperationName.TWO_FA, [account_id], {}, "test")
    operation_id = batch.operations[0].id
    worker_writes(redis_client, operation_id, "done", "w1", "inst-w1", result={"has_password": True, "changed": False})
    data = {"account_id": str(account_id), "name": "2fa", "status": "done", "error": "", "until": ""}
    events.emit(redis_client, events.WireEventKind.OPERATION_STATUS, str(operation_id), data)
    reconciler.apply_events(_all_events(redis_client))
    with service.sessions() as session:
        row = session.get(AccountOperation, operation_id)
        assert row.status == "done" and json.loads(row.result) == {"has_password": True, "changed": False}
        assert row.finished_at is not None


def _all_events(redis: Redis) -> list[Any]:
    from celery_app import events

    return [
        events.WireEvent.from_fields(entry_id, fields)
        for entry_id, fields in redis.xrange(keys.EVENTS_STREAM)
        if events.WireEvent.from_fields(entry_id, fields) is not None
    ]
