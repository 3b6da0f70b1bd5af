"""The backend believes what a worker says of itself and of the accounts given to it, and nothing else.

Each worker writes its events to a stream of its own (no other worker's Redis login can write it); events are
emitted as the workers emit them and read by the backend's real event loop functions, against a real Redis.
"""

from __future__ import annotations

from redis import Redis
from sqlalchemy import select

from backend.reconciler import Reconciler
from celery_app import events, keys
from celery_app.account_state import AccountState, AccountStatus
from celery_app.events import WireEventKind
from database.models import FleetEvent, Worker
from tests.test_level_triggered import account, beat, reconciler, recorded, worker

FIXTURES = (reconciler,)


def _deliver(reconciler: Reconciler) -> None:
    """What the backend's loop does with what is waiting: read every known stream, apply, acknowledge."""
    streams = reconciler.follow_known_streams()
    events.ensure_group(reconciler.redis, streams)
    batch = events.read_group(reconciler.redis, 100, streams=streams)
    reconciler.apply_events(batch)
    events.acknowledge(reconciler.redis, batch)


def _plugin_events(reconciler: Reconciler) -> list[str]:
    with reconciler.sessions() as session:
        return [
            row.subject
            for row in session.scalars(select(FleetEvent).where(FleetEvent.kind.in_(("plugin.event", "plugin.alert"))))
        ]


def _status(reconciler: Reconciler, name: str) -> str:
    with reconciler.sessions() as session:
        return str(session.scalar(select(Worker.status).where(Worker.name == name)))


def test_a_worker_cannot_speak_for_another_worker_or_its_accounts(reconciler: Reconciler, redis_client: Redis) -> None:
    w1 = worker(reconciler, "w1")
    worker(reconciler, "w2")
    beat(redis_client, "w1", {})
    beat(redis_client, "w2", {})
    reconciler.scan()
    assert _status(reconciler, "w1") == "online"
    ones = account(reconciler, w1, "running", "running")
    said = {"plugin": "watch", "kind": "k", "text": "forged", "alert": True}
    # w2 writes, in its own stream: that w1 went offline, an alert of w1's account, and w1's account banned.
    forged = keys.worker_events("w2")
    events.emit(redis_client, WireEventKind.WORKER_OFFLINE, "w1", {"reason": "stopped"}, forged)
    events.emit(redis_client, WireEventKind.PLUGIN_EVENT, str(ones), said, forged)
    banned = AccountState(ones, AccountStatus.BANNED, "w1").to_fields()
    events.emit(redis_client, WireEventKind.ACCOUNT_STATUS, str(ones), banned, forged)
    _deliver(reconciler)
    assert _status(reconciler, "w1") == "online"
    assert _plugin_events(reconciler) == []
    assert recorded(reconciler, ones)[0] == "running"
    # The same plugin event from w1's own stream is w1's to say.
    events.emit(redis_client, WireEventKind.PLUGIN_EVENT, str(ones), said, keys.worker_events("w1"))
    _deliver(reconciler)
    assert _plugin_events(reconciler) == [f"account:{ones}"]


def test_the_backend_reads_a_new_workers_stream_from_its_first_event(
    reconciler: Reconciler, redis_client: Redis
) -> None:
    reconciler.scan()
    events.emit(redis_client, WireEventKind.WORKER_ONLINE, "w3", {"name": "w3"}, keys.worker_events("w3"))
    beat(redis_client, "w3", {})  # written before the backend knew the name: read all the same
    _deliver(reconciler)
    assert _status(reconciler, "w3") == "online"
    assert events.read_group(redis_client, 10, streams=reconciler.event_streams) == []  # all acknowledged
