"""What every part of the accounts service shares: its connections, SECRET_KEY's box, the checks each command
makes of its worker (recorded, active, online), and `account_spec` — what a worker needs to run an account.

`AccountService` (`backend.accounts_service`) is composed of the parts built on `AccountServiceBase`: views
(`backend.account_views`), onboarding (`backend.onboarding`) and lifecycle (`backend.account_lifecycle`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Row
from sqlalchemy.orm import Session, sessionmaker

from backend.dispatch import TaskDispatcher
from backend.errors import AccountError, WorkerUnavailable
from celery_app import keys, presence
from celery_app.contract import AccountSpec
from celery_app.presence import Liveness, liveness
from common.crypto import SecretBox, SecretError
from database.accounts import device_of
from database.models import Account, Worker
from database.workers import get_worker


def account_spec(account: Account | Row[Any]) -> AccountSpec:
    """What a worker needs to run the account; the secrets go as stored (already encrypted)."""
    if account.session_enc is None:
        raise AccountError(f"account {account.id} has no session: log in first", "no_session", id=account.id)
    return AccountSpec(
        account_id=account.id,
        phone_enc=account.phone_enc,
        api_id=account.api_id,
        api_hash_enc=account.api_hash_enc,
        session_enc=account.session_enc,
        proxy_enc=account.proxy_enc,
        proxy_id=account.proxy_id if account.proxy_enc else None,
        device=device_of(account),
    )


def not_assigned(account_id: int) -> AccountError:
    return AccountError(
        f"account {account_id} is not assigned to a worker; move it to one first", "no_worker", id=account_id
    )


class AccountServiceBase:
    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        dispatcher: TaskDispatcher,
        offline_after: float,
        secret_box: Callable[[], SecretBox],
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.offline_after = offline_after
        self._secret_box = secret_box
        self._canary_written = False
        self.lease_wait = offline_after + 5

    def secret_key_is_the_fleets(self) -> bool:
        """Whether this process's SECRET_KEY opens the key check the fleet's first control-plane process wrote
        (True when there is none yet, or Redis cannot say)."""
        box = self.box
        try:
            canary = self.redis.get(keys.SECRET_CANARY)
        except RedisError:
            return True
        if not canary:
            return True
        try:
            box.decrypt(canary.decode() if isinstance(canary, bytes) else str(canary))
        except SecretError:
            return False
        return True

    @property
    def box(self) -> SecretBox:
        box = self._secret_box()
        if not self._canary_written:
            # Lets a worker host check its SECRET_KEY (`run_worker.py --check`) against this one's.
            with contextlib.suppress(RedisError):
                self.redis.set(keys.SECRET_CANARY, box.encrypt("fleet"), nx=True)
            self._canary_written = True
        return box

    def _worker_online(self, name: str) -> bool:
        snapshot = presence.read_heartbeats(self.redis, [name])
        return liveness(snapshot.beats.get(name), snapshot.now, self.offline_after) is Liveness.ONLINE

    def _usable_worker(self, session: Session, name: str) -> Worker:
        worker = get_worker(session, name)
        self._ensure_usable(name, worker.is_active, worker.pending_key is not None)
        return worker

    def _ensure_usable(self, name: str, active: bool, key_pending: bool = False) -> None:
        """WorkerUnavailable unless the worker is active, presents its pinned key and is online, saying which it is
        not."""
        if not active:
            raise WorkerUnavailable(
                f"worker {name!r} is deactivated; activate it first or choose another worker",
                "worker_deactivated",
                worker=name,
            )
        if key_pending:
            raise WorkerUnavailable(
                f"worker {name!r} presents a key other than its pinned one: it gets no work until an owner trusts it "
                f"(run_cli.py workers trust {name})",
                "worker_key_untrusted",
                worker=name,
            )
        if not self._worker_online(name):
            raise WorkerUnavailable(
                f"worker {name!r} is offline; start it or choose another worker", "worker_offline", worker=name
            )

    @staticmethod
    def _worker_name(session: Session, account: Account) -> str:
        if account.worker_id is None:
            raise not_assigned(account.id)
        worker = session.get(Worker, account.worker_id)
        assert worker is not None
        return worker.name
