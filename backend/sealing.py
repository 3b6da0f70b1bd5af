"""Secrets leave the control host sealed to the one worker they are for (`common.sealing`).

The database keeps every secret encrypted with SECRET_KEY (`common.crypto`), which lives on the control host(s)
only. What goes to a worker — a task payload's `*_enc` fields (sessions, phone numbers, API hashes, proxy URLs,
2FA passwords), and specs written into its registry — is opened here and sealed to the public key pinned for that
worker (`database.workers`), with the field's name as the associated data: only that worker's private key opens
it, and only as that field. A worker that presents no pinned key yet (one from before keys) is sent the
SECRET_KEY tokens as before.

What a worker sends back (a new session after a login) is sealed to the control plane's own key pair, derived
from SECRET_KEY (so there is nothing more to keep), whose public half is published in Redis for workers to read
(`keys.CONTROL_PUBLIC_KEY`); `receive` opens it and encrypts it with SECRET_KEY for the database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from celery_app import keys
from common.crypto import SecretBox, SecretError, split_keys
from common.sealing import KeyPair, SealError, is_sealed, open_sealed, seal
from database.models import Worker

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
CONTROL_PURPOSE = "fleet-control-plane-v1"
KEY_CACHE_SECONDS = 5.0  # a newly pinned or trusted key is used within this long
MEMO_ENTRIES = 20_000  # sealed values kept (about 1 KB each with a session): starts of the same accounts repeat


def control_keys(secret_key: str) -> list[KeyPair]:
    """The control plane's key pairs: the first SECRET_KEY's (the one published), then older keys' (a rekey in
    progress may still receive values sealed to them)."""
    return [KeyPair.derive(key, CONTROL_PURPOSE) for key in split_keys(secret_key)]


class WorkerKeys:
    """The public key pinned for each worker, read from the database and kept for a few seconds."""

    def __init__(self, sessions: sessionmaker[Session], ttl: float = KEY_CACHE_SECONDS) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, worker: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(worker)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with self.sessions() as session:
            key = session.scalar(select(Worker.public_key).where(Worker.name == worker))
        with self._lock:
            self._cache[worker] = (now, key)
        return key

    def forget(self, worker: str) -> None:
        with self._lock:
            self._cache.pop(worker, None)


class Sealer:
    """Seals what goes to a worker to its key, and opens what comes back sealed to the control plane."""

    def __init__(self, box: SecretBox, secret_key: str, worker_keys: Callable[[str], str | None]) -> None:
        self.box = box
        self.worker_keys = worker_keys
        self.control = control_keys(secret_key)
        self._memo: dict[tuple[str, str, bytes], str] = {}  # (worker key, field, token's digest) -> sealed
        self._memo_lock = threading.Lock()

    @property
    def control_public_key(self) -> str:
        return self.control[0].public_key

    def publish(self, redis: Redis) -> None:
        """Where workers find the key to seal what they send back."""
        redis.set(keys.CONTROL_PUBLIC_KEY, self.control_public_key)

    def for_worker(self, worker: str, payload: M) -> M:
        """`payload` with every `*_enc` field (nested models and lists too) sealed to `worker`'s pinned key; as it
        is when the worker has none."""
        key = self.worker_keys(worker)
        return payload if not key else self._sealed(payload, key)

    def seal_value(self, key: str, field: str, token: str) -> str:
        """One SECRET_KEY token, sealed to `key` as `field` (the same token again: the same sealed value)."""
        if is_sealed(token):
            return token
        memo = (key, field, hashlib.blake2b(token.encode(), digest_size=16).digest())
        with self._memo_lock:
            found = self._memo.get(memo)
        if found is None:
            try:
                found = seal(key, self.box.decrypt(token), field)
            except SecretError:  # not this SECRET_KEY's: sent as is, the worker refuses that one account, says why
                log.warning("a %s does not open with this SECRET_KEY: sent unsealed (said once a token)", field)
                found = token
            with self._memo_lock:
                if len(self._memo) >= MEMO_ENTRIES:
                    self._memo.clear()
                self._memo[memo] = found
        return found

    def _sealed(self, model: M, key: str) -> M:
        changes: dict[str, Any] = {}
        for name, value in model:
            if isinstance(value, str) and name.endswith("_enc"):
                changes[name] = self.seal_value(key, name, value)
            elif isinstance(value, BaseModel):
                changes[name] = self._sealed(value, key)
            elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
                changes[name] = [self._sealed(item, key) for item in value]
        return model.model_copy(update=changes) if changes else model

    def receive(self, value: str, field: str) -> str:
        """A value a worker sent back, as the database keeps it (SECRET_KEY's token): sealed to the control plane
        (opened, then encrypted), or a SECRET_KEY token from a worker that still holds it (kept)."""
        if not is_sealed(value):
            return value
        for pair in self.control:
            try:
                return self.box.encrypt(open_sealed(pair, value, field))
            except SealError:
                continue
        raise SealError(f"the worker's {field} is sealed to a key this control plane does not hold")
