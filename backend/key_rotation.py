"""`run_cli.py workers rotate-key NAME`: a worker makes a new key pair, the control plane pins it, and what the
worker's registry holds is sealed again to the new key.

The worker writes its new private key over its key file and keeps the old one in memory, so whatever was sealed
to the old key before the control plane pinned the new one still opens until that process ends; by then its
registry holds only what is sealed to the new key (rewritten here, from the database). The backend judges a key
other than the pinned one only when two scans in a row see it, so the moment between the worker's new key and
the pin raises no alarm.
"""

from __future__ import annotations

from redis import Redis
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from backend.account_base import account_spec
from backend.dispatch import TaskDispatcher, WorkerDidNotAnswer
from backend.errors import WorkerUnavailable
from backend.sealing import WorkerKeys
from celery_app import keys, presence
from celery_app.contract import KeyRotated, TaskName
from common.details import detail
from common.sealing import fingerprint, parse_public_key
from database import workers as workers_db
from database.accounts import spec_rows
from database.audit import audited, named
from database.events import NewEvent, record_events
from database.models import FleetEventKind, Worker

ROTATE_TIMEOUT = 20.0
# Rewrites a registry entry only if the worker still holds it (one it dropped meanwhile is not brought back).
_REPLACE_IF_HELD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""


class KeyRotation:
    def __init__(
        self, redis: Redis, sessions: sessionmaker[Session], dispatcher: TaskDispatcher, offline_after: float
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.offline_after = offline_after

    @audited("worker.rotate_key", named(("worker", "name")))
    def rotate(self, name: str, actor: str) -> str:
        """Rotate the worker's key; returns the new key's fingerprint."""
        with self.sessions() as session:
            worker = workers_db.get_worker(session, name)
            if worker.pending_key is not None:
                raise WorkerUnavailable(
                    f"worker {name!r} presents a key other than its pinned one: trust or refuse it first",
                    "worker_key_untrusted",
                    worker=name,
                )
        snapshot = presence.read_heartbeats(self.redis, [name])
        if (
            presence.liveness(snapshot.beats.get(name), snapshot.now, self.offline_after)
            is not presence.Liveness.ONLINE
        ):
            raise WorkerUnavailable(
                f"worker {name!r} is offline; start it to rotate its key", "worker_offline", worker=name
            )
        answer = self.dispatcher.call(name, TaskName.ROTATE_KEY, None, ROTATE_TIMEOUT)
        try:
            new_key = parse_public_key(KeyRotated.model_validate(answer).public_key)
        except ValueError:
            raise WorkerDidNotAnswer(name, ROTATE_TIMEOUT) from None
        with self.sessions.begin() as session:
            session.execute(update(Worker).where(Worker.name == name).values(public_key=new_key, pending_key=None))
            said = detail("key", fingerprint=fingerprint(new_key))
            record_events(session, [NewEvent(FleetEventKind.WORKER_KEY_ROTATED, name, said, actor)])
        presence.present_key(self.redis, name, new_key)
        self._reseal_registry(name)
        return fingerprint(new_key)

    def _reseal_registry(self, name: str) -> None:
        """What the worker's registry holds, sealed again to the key just pinned (as a start would send it)."""
        sealer = self.dispatcher.sealer
        if sealer is None:
            return
        if isinstance(sealer.worker_keys, WorkerKeys):
            sealer.worker_keys.forget(name)
        held = [int(account_id) for account_id in self.redis.hkeys(keys.worker_specs(name))]
        if not held:
            return
        with self.sessions() as session:
            rows = spec_rows(session, held)
        pipe = self.redis.pipeline(transaction=False)
        for account_id, row in rows.items():
            if row.session_enc is not None:
                spec = sealer.for_worker(name, account_spec(row))
                pipe.eval(_REPLACE_IF_HELD, 1, keys.worker_specs(name), str(account_id), spec.model_dump_json())
        pipe.execute()
