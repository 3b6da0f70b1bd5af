"""After accounts' proxy pins changed (an admin's `set-proxy`, a removal with `--reassign`, the backend moving
accounts off a dead proxy): bring their workers in line.

An account its worker runs now is restarted there onto its new proxy (`RESTART_ACCOUNT`: the worker stops the
client and starts it again under the same lease, so the account never has two connections at once); the spec
a worker keeps to resume an account after a restart of its own (`keys.worker_specs`) is replaced, so that an
offline worker comes back with the new proxy. Nothing else is needed for accounts that do not run: their next
start reads the pin from the database. A restart that is lost is sent again by the backend's scan, which sees
the account running through another proxy than its pin (`backend.proxy_health`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis

from backend.account_base import account_spec
from backend.dispatch import TaskDispatcher
from celery_app import keys, presence, report
from celery_app.contract import Payload, StartAccount, TaskName
from celery_app.presence import Liveness, liveness
from database.models import Account, DesiredState

log = logging.getLogger(__name__)
RESTART_LEASE_WAIT = 2.0  # as `AccountLifecycle.restart`: the worker's own stop lets go of the lease first


@dataclass(frozen=True)
class Repinned:
    """An account whose pin changed, as it is now (read in the transaction that changed it)."""

    account: Account
    worker: str | None


def follow_pins(redis: Redis, dispatcher: TaskDispatcher, offline_after: float, changed: list[Repinned]) -> list[int]:
    """Replace the changed accounts' resumable specs and restart those running now; returns the restarted ids."""
    placed = [item for item in changed if item.worker is not None and item.account.session_enc is not None]
    if not placed:
        return []
    pipe = redis.pipeline(transaction=False)
    for item in placed:
        assert item.worker is not None
        pipe.hexists(keys.worker_specs(item.worker), str(item.account.id))
    kept = [item for item, exists in zip(placed, pipe.execute(), strict=True) if exists]
    if kept:
        pipe = redis.pipeline(transaction=False)
        for item in kept:
            assert item.worker is not None
            spec = account_spec(item.account)
            if dispatcher.sealer is not None:  # the registry holds what was sealed to its worker, as a start sends
                spec = dispatcher.sealer.for_worker(item.worker, spec)
            pipe.hset(keys.worker_specs(item.worker), str(item.account.id), spec.model_dump_json())
        pipe.execute()
    names = sorted({item.worker for item in placed if item.worker is not None})
    snapshot = presence.read_heartbeats(redis, names)
    online = [
        name for name in names if liveness(snapshot.beats.get(name), snapshot.now, offline_after) is Liveness.ONLINE
    ]
    reports = report.read_reports(redis, online)
    messages: list[tuple[str, TaskName, Payload]] = []
    for item in placed:
        seen = reports.get(item.worker or "")
        if (
            seen is not None
            and item.account.id in seen.statuses
            and item.account.desired_state == DesiredState.RUNNING.value
        ):
            assert item.worker is not None
            spec = account_spec(item.account)
            messages.append(
                (item.worker, TaskName.RESTART_ACCOUNT, StartAccount(spec=spec, wait_for_lease=RESTART_LEASE_WAIT))
            )
    dispatcher.send_many(messages)
    if messages:
        log.info("restarting %d account(s) onto their new proxies", len(messages))
    return [payload.spec.account_id for _, _, payload in messages if isinstance(payload, StartAccount)]
