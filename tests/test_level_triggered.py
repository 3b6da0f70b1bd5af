"""The level-triggered account scan in-process, against a real Redis and both databases.

Workers are simulated in Redis exactly as real ones publish themselves (registration, heartbeat time and
report); what the scan dispatches is read back from the worker's real Celery queue in Redis.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from backend.account_sync import AccountSync
from backend.audit_service import AuditService
from backend.dispatch import TaskDispatcher
from backend.reconciler import Reconciler
from celery_app import keys, presence, report
from celery_app.account_state import AccountState, AccountStatus
from celery_app.events import WireEvent, WireEventKind
from celery_app.presence import WorkerInfo
from common.details import Detail, detail
from database.accounts import account_counts
from database.audit import record_audit
from database.engine import open_database
from database.events import NewEvent, account_subject, record_events
from database.models import Account, FleetEvent, epoch_to_datetime, utcnow
from database.workers import add_worker

OFFLINE_AFTER = 6.0  # the fence (and the limit of belief) is at 3 s


@pytest.fixture
def reconciler(redis_client: Redis, database_url: str, redis_url: str) -> Iterator[Reconciler]:
    _engine, sessions = open_database(database_url)
    sync = AccountSync(TaskDispatcher(redis_url), lease_wait=5, cooldown=15, max_cooldown=120, batch=3)
    yield Reconciler(redis_client, sessions, OFFLINE_AFTER, sync)


def worker(reconciler: Reconciler, name: str, active: bool = True) -> int:
    with reconciler.sessions.begin() as session:
        row = add_worker(session, name, f"addr-{name}", "test")
        row.is_active = active
        session.flush()
        return row.id


def beat(redis: Redis, name: str, statuses: dict[int, str], age: float = 0.0) -> float:
    """`name` registers and reports `statuses` as real workers do; its heartbeat and report are `age` s old."""
    info = WorkerInfo(name, "a", "h", 1, "0.1.0", 0, f"inst-{name}")
    presence.register(redis, info, OFFLINE_AFTER, report=report.encode(statuses.items()))
    at = presence.server_time(redis) - age
    redis.zadd(keys.HEARTBEATS, {name: at})
    redis.hset(keys.worker_report(name), "at", f"{at:.6f}")
    return at


def account(
    reconciler: Reconciler, worker_id: int | None, desired: str, status: str, changed: float | None = None
) -> int:
    with reconciler.sessions.begin() as session:
        row = Account(
            phone_enc="p" * 40,
            phone_lookup=uuid.uuid4().hex,
            phone_masked="+1 *** ***-00-00",
            api_id=1,
            api_hash_enc="h" * 40,
            session_enc="s" * 40,
            worker_id=worker_id,
            desired_state=desired,
            status=status,
            status_detail="",
            status_changed_at=epoch_to_datetime(changed) if changed else None,
        )
        session.add(row)
        session.flush()
        return row.id


def recorded(reconciler: Reconciler, account_id: int) -> tuple[str, str]:
    with reconciler.sessions() as session:
        row = session.get(Account, account_id)
        assert row is not None
        return row.status, row.status_detail


def queued(redis: Redis, name: str) -> list[tuple[str, Any]]:
    """(task name, payload) of every message waiting on the worker's Celery queue, oldest first."""
    found = []
    for raw in reversed(redis.lrange(f"worker.{name}", 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args[0] if args else None))
    return found


def started_ids(redis: Redis, name: str) -> list[int]:
    return [
        spec["account_id"]
        for task, payload in queued(redis, name)
        if task == "fleet.account.start_many"
        for spec in payload["specs"]
    ]


def stopped_ids(redis: Redis, name: str) -> list[int]:
    return [payload["account_id"] for task, payload in queued(redis, name) if task == "fleet.account.stop"]


def test_recorded_running_but_not_reported_is_corrected_and_started_again(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    w1 = worker(reconciler, "w1")
    ghost = account(reconciler, w1, "running", "running", changed=presence.server_time(redis_client) - 60)
    real = account(reconciler, w1, "running", "running", changed=presence.server_time(redis_client) - 60)
    beat(redis_client, "w1", {real: "running"})
    result = reconciler.scan()
    assert result.accounts is not None and result.accounts.corrected == 1
    assert recorded(reconciler, ghost) == ("lost", "not running on worker w1")
    assert recorded(reconciler, real) == ("running", "")
    assert started_ids(redis_client, "w1") == [ghost]
    # The start is not repeated on the next scans (its outcome is not in yet).
    reconciler.scan()
    reconciler.scan()
    assert started_ids(redis_client, "w1") == [ghost]
    # The backend's own start is in the audit log, once, as the system's.
    audit = AuditService(reconciler.sessions).entries()
    assert [(r.actor, r.role, r.action, r.targets, r.outcome) for r in audit] == [
        ("backend", "system", "reconcile.start", ("worker:w1", f"account:{ghost}"), "ok")
    ]


def test_a_silent_worker_is_not_believed_and_an_offline_one_has_lost_its_accounts(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    w1 = worker(reconciler, "w1")
    listed = account(reconciler, w1, "running", "running", changed=presence.server_time(redis_client) - 60)
    unlisted = account(reconciler, w1, "running", "running", changed=presence.server_time(redis_client) - 60)
    beat(redis_client, "w1", {listed: "running"}, age=4)  # past the fence time: it may have stopped everything
    reconciler.scan()
    assert recorded(reconciler, listed)[0] == "running" and recorded(reconciler, unlisted)[0] == "running"
    assert queued(redis_client, "w1") == [], "nothing is started on a worker that may be cut off"
    beat(redis_client, "w1", {listed: "running"}, age=10)  # offline now
    reconciler.scan()
    assert (
        recorded(reconciler, listed)
        == recorded(reconciler, unlisted)
        == ("lost", "worker w1 is offline (silent for 10 s)")
    )
    assert queued(redis_client, "w1") == []


def test_a_stale_event_does_not_undo_what_a_newer_report_showed(reconciler: Reconciler, redis_client: Redis) -> None:
    w1 = worker(reconciler, "w1")
    old = presence.server_time(redis_client) - 30
    account_id = account(reconciler, w1, "running", "running", changed=old)
    beat(redis_client, "w1", {})
    reconciler.scan()
    assert recorded(reconciler, account_id)[0] == "lost"
    # A status written before that report, applied late (the backend was behind), changes nothing.
    state = AccountState(account_id, AccountStatus.RUNNING, "w1", rt=old + 1)
    for rt, outcome in ((old + 1, "lost"), (presence.server_time(redis_client) + 1, "running")):  # then news
        written = state.to_fields() | {"rt": str(rt)}
        redis_client.hset(keys.account_state("w1", account_id), mapping=written)  # where the worker writes it
        reconciler.apply_events([WireEvent(WireEventKind.ACCOUNT_STATUS.value, str(account_id), written)])
        assert recorded(reconciler, account_id)[0] == outcome


def test_a_status_event_is_recorded_only_as_the_assigned_worker_wrote_it(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    w1 = worker(reconciler, "w1")
    worker(reconciler, "w2")
    old = presence.server_time(redis_client) - 30
    account_id = account(reconciler, w1, "running", "running", changed=old)
    at = presence.server_time(redis_client) + 1
    # w2 claims w1's account is banned: an event, and a status in w2's own keys. Refused.
    forged = AccountState(account_id, AccountStatus.BANNED, "w2").to_fields() | {"rt": str(at)}
    redis_client.hset(keys.account_state("w2", account_id), mapping=forged)
    reconciler.apply_events([WireEvent(WireEventKind.ACCOUNT_STATUS.value, str(account_id), forged)])
    assert recorded(reconciler, account_id)[0] == "running"
    # ...and an event naming w1 with words w1 never wrote: only what w1's own keys say is recorded.
    lie = forged | {"worker": "w1"}
    reconciler.apply_events([WireEvent(WireEventKind.ACCOUNT_STATUS.value, str(account_id), lie)])
    assert recorded(reconciler, account_id)[0] == "running"
    said = AccountState(account_id, AccountStatus.FLOOD_WAIT, "w1", until=2e9).to_fields() | {"rt": str(at)}
    redis_client.hset(keys.account_state("w1", account_id), mapping=said)
    reconciler.apply_events([WireEvent(WireEventKind.ACCOUNT_STATUS.value, str(account_id), lie)])
    assert recorded(reconciler, account_id)[0] == "flood_wait"


def test_a_record_newer_than_the_report_waits_for_the_next_report(reconciler: Reconciler, redis_client: Redis) -> None:
    w1 = worker(reconciler, "w1")
    at = beat(redis_client, "w1", {})
    just_started = account(reconciler, w1, "running", "starting", changed=at + 0.5)  # after the last heartbeat
    reconciler.scan()
    assert recorded(reconciler, just_started)[0] == "starting"
    assert queued(redis_client, "w1") == []


def test_what_runs_where_it_should_not_is_stopped(reconciler: Reconciler, redis_client: Redis) -> None:
    w1, w2 = worker(reconciler, "w1"), worker(reconciler, "w2")
    old = presence.server_time(redis_client) - 60
    unwanted = account(reconciler, w1, "stopped", "running", changed=old)
    moved = account(reconciler, w2, "running", "running", changed=old)
    beat(redis_client, "w1", {unwanted: "running", moved: "running", 999_999: "running"})
    beat(redis_client, "w2", {moved: "running"})
    reconciler.scan()
    assert sorted(stopped_ids(redis_client, "w1")) == sorted([unwanted, moved, 999_999])
    assert stopped_ids(redis_client, "w2") == []
    assert recorded(reconciler, unwanted)[0] == "running"  # it does run, until the stop is done


def test_the_listed_status_corrects_the_record_with_the_workers_detail(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    w1 = worker(reconciler, "w1")
    account_id = account(reconciler, w1, "running", "lost", changed=presence.server_time(redis_client) - 60)
    state = AccountState(account_id, AccountStatus.FLOOD_WAIT, "w1", "Telegram asks to wait 300 s", until=2e9)
    redis_client.hset(keys.account_state("w1", account_id), mapping=state.to_fields())
    beat(redis_client, "w1", {account_id: "flood_wait"})
    reconciler.scan()
    assert recorded(reconciler, account_id) == ("flood_wait", "Telegram asks to wait 300 s")
    assert queued(redis_client, "w1") == []


def test_starts_are_paced_per_worker_and_back_off_while_they_fail(
    reconciler: Reconciler, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    w1 = worker(reconciler, "w1")
    worker(reconciler, "off", active=False)
    ids = [account(reconciler, w1, "running", "stopped") for _ in range(5)]
    beat(redis_client, "w1", {})
    sync = reconciler.accounts
    assert sync is not None
    clock = [1000.0]
    monkeypatch.setattr("backend.account_sync.time.monotonic", lambda: clock[0])
    reconciler.scan()
    assert started_ids(redis_client, "w1") == ids[:3]  # at most `batch` per worker per scan
    reconciler.scan()
    assert started_ids(redis_client, "w1") == ids  # the rest on the next scan; the first three not again
    redis_client.delete("worker.w1")
    clock[0] += 15  # the cooldown has passed and they still do not run: start again
    reconciler.scan()
    reconciler.scan()
    assert sorted(started_ids(redis_client, "w1")) == ids
    redis_client.delete("worker.w1")
    clock[0] += 15  # a second failure doubles the wait
    reconciler.scan()
    assert started_ids(redis_client, "w1") == []
    clock[0] += 15
    reconciler.scan()
    assert len(started_ids(redis_client, "w1")) == 3


def test_nothing_is_started_on_a_deactivated_worker_or_for_an_account_that_needs_an_admin(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    off = worker(reconciler, "off", active=False)
    w1 = worker(reconciler, "w1")
    account(reconciler, off, "running", "stopped")
    account(reconciler, w1, "running", "unauthorized")
    account(reconciler, w1, "running", "banned")
    account(reconciler, w1, "stopped", "stopped")
    beat(redis_client, "off", {})
    beat(redis_client, "w1", {})
    reconciler.scan()
    assert queued(redis_client, "off") == [] and queued(redis_client, "w1") == []


def test_a_scan_of_accounts_costs_a_fixed_number_of_statements(reconciler: Reconciler, redis_client: Redis) -> None:
    from sqlalchemy import event

    names = [f"w{i}" for i in range(20)]
    ids = {name: worker(reconciler, name) for name in names}
    for name in names:
        listed = {account(reconciler, ids[name], "running", "running"): "running" for _ in range(5)}
        beat(redis_client, name, listed)
    reconciler.scan()
    statements: list[str] = []
    engine = reconciler.sessions.kw["bind"]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0])

    for name in names:  # everyone heartbeats again
        beat(redis_client, name, {i: "running" for i in range(1, 101) if (i - 1) // 5 == names.index(name)})
    reconciler.scan()
    assert len(statements) <= 6, statements


def status(value: str, cause: Detail) -> Detail:
    return detail("status_change", status=value, cause=cause)


def retry(attempt: int) -> Detail:
    return detail("retry", detail=detail("network", cause=detail("refused")), attempt=attempt, delay=8.0)


def reconnecting(attempt: int) -> Detail:
    return detail("reconnecting", attempt=attempt)


def test_repeated_transitions_fold_into_one_row_with_a_count(reconciler: Reconciler) -> None:
    subject = account_subject(7)
    base = utcnow()
    with reconciler.sessions.begin() as session:
        for index in range(50):  # a flapping account: error, starting, error, starting…
            at = base + timedelta(seconds=index * 2)
            record_events(
                session,
                [
                    NewEvent("account.status", subject, status("error", retry(index)), "worker", at),
                    NewEvent("account.status", subject, status("starting", reconnecting(index)), "worker", at),
                ],
            )
        gone = status("banned", detail("user_deactivated"))
        record_events(session, [NewEvent("account.status", subject, gone, "worker")])
    with reconciler.sessions() as session:
        rows = session.scalars(select(FleetEvent).where(FleetEvent.subject == subject).order_by(FleetEvent.id)).all()
    assert [(row.detail.split(":")[0], row.repeat_count) for row in rows] == [
        ("error", 50),
        ("starting", 50),
        ("banned", 1),
    ]
    assert rows[0].detail == "error: network: connection refused; retry 49 in 8 s"  # the latest words
    assert Detail.decode(rows[0].detail_code) == status("error", retry(49))  # and the latest code
    assert rows[0].created_at == base and rows[0].last_at == base + timedelta(seconds=98)
    # Outside the window a transition starts a new row.
    later = base + timedelta(hours=2)
    with reconciler.sessions.begin() as session:
        record_events(session, [NewEvent("account.status", subject, status("error", retry(1)), "worker", later)])
    with reconciler.sessions() as session:
        assert session.scalar(select(FleetEvent.repeat_count).order_by(FleetEvent.id.desc()).limit(1)) == 1


def test_history_older_than_the_retention_is_pruned_in_batches(
    reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backend.reconciler.PRUNE_BATCH", 7)
    now = utcnow()
    with reconciler.sessions.begin() as session:
        old = [NewEvent("worker.online", f"old-{i}", None, at=now - timedelta(days=31)) for i in range(30)]
        new = [NewEvent("worker.online", f"new-{i}", None, at=now - timedelta(days=29)) for i in range(5)]
        record_events(session, old + new)
        # The audit log has its own retention (AUDIT_RETENTION_DAYS, 365 by default): a month is nothing to it.
        for days in (31, 364, 366, 400):
            record_audit(session, "cli:ops", "worker.add", [f"worker:{days}"], at=now - timedelta(days=days))
    assert reconciler.prune_history() == 30 + 2
    with reconciler.sessions() as session:
        left = session.scalars(select(FleetEvent.subject)).all()
    assert sorted(left) == sorted(f"new-{i}" for i in range(5))
    assert [r.targets for r in AuditService(reconciler.sessions).entries()] == [("worker:364",), ("worker:31",)]


def test_views_show_a_status_only_when_a_live_source_reports_it(
    reconciler: Reconciler, redis_client: Redis, redis_url: str
) -> None:
    from backend.accounts_service import AccountService
    from backend.fleet import FleetService
    from common.crypto import SecretBox

    box = SecretBox("v" * 40)
    service = AccountService(redis_client, reconciler.sessions, TaskDispatcher(redis_url), OFFLINE_AFTER, lambda: box)
    workers = FleetService(redis_client, reconciler.sessions, OFFLINE_AFTER, account_counts)
    w1 = worker(reconciler, "w1")
    old = presence.server_time(redis_client) - 60
    runs = account(reconciler, w1, "running", "running", changed=old)
    ghost = account(reconciler, w1, "running", "running", changed=old)  # the database is wrong about this one

    def shown() -> dict[int, tuple[str, str, bool]]:
        return {view.id: (view.status, view.detail, view.live) for view in service.list_accounts()}

    beat(redis_client, "w1", {runs: "running"})
    assert shown() == {runs: ("running", "", True), ghost: ("lost", "not running on worker w1", True)}
    assert workers.get_worker("w1").worker.accounts_running == 1
    assert workers.summary().accounts_by_status == {"running": 1, "unknown": 1}  # the record's guess is not a fact
    beat(redis_client, "w1", {runs: "running"}, age=4)  # silent past its fence time: it may have stopped them
    assert shown() == {
        runs: ("unknown", "worker w1 silent for 4 s", False),
        ghost: ("unknown", "worker w1 silent for 4 s", False),
    }
    assert workers.get_worker("w1").worker.accounts_running is None
    beat(redis_client, "w1", {runs: "running"}, age=10)
    assert shown()[runs] == ("lost", "worker w1 is offline (silent for 10 s)", False)
    assert workers.get_worker("w1").worker.accounts_running == 0
    # What the worker wrote after its last heartbeat is the newest word.
    at = beat(redis_client, "w1", {})
    state = AccountState(ghost, AccountStatus.STARTING, "w1", "connecting", active=True)
    redis_client.hset(keys.account_state("w1", ghost), mapping=state.to_fields() | {"rt": f"{at + 0.5:.6f}"})
    assert shown()[ghost] == ("starting", "connecting", True)


def test_the_stream_is_trimmed_only_of_what_the_backend_applied(redis_client: Redis) -> None:
    from celery_app import events

    events.ensure_group(redis_client)
    for index in range(1000):
        events.emit(redis_client, WireEventKind.WORKER_ONLINE, f"w{index}")
    everything = [entry_id for entry_id, _fields in redis_client.xrange(keys.EVENTS_STREAM)]
    applied = events.read_group(redis_client, 100, count=600)
    events.acknowledge(redis_client, applied)
    events.read_group(redis_client, 100, count=100)  # read, not yet acknowledged: still to be applied
    events.trim_applied(redis_client)
    left = [entry_id for entry_id, _fields in redis_client.xrange(keys.EVENTS_STREAM)]
    assert set(everything[600:]) <= set(left), "nothing the backend has not applied is trimmed"
    assert len(left) < 1000, "what it applied is trimmed (in whole blocks: the trim is approximate)"
    assert not events.unread_were_dropped(redis_client)
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(keys.EVENTS_MAXLEN + 5000):  # a long backend outage: the writers' cap drops unread entries
        pipe.xadd(keys.EVENTS_STREAM, {"kind": "x", "subject": "y", "data": "{}"}, maxlen=keys.EVENTS_MAXLEN)
    pipe.execute()
    assert events.unread_were_dropped(redis_client)
