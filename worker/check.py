"""`run_worker.py --check`: can this host run its worker? Redis reachable (and on which login), SECRET_KEY right,
the name free.

Registers nothing and starts nothing. SECRET_KEY is checked against what the control plane encrypted: the
canary the backend keeps in Redis (`keys.SECRET_CANARY`) and this worker's own spec registry, if any.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys, presence
from common.crypto import SecretBox, SecretError
from common.redis_target import open_redis
from common.sealing import KeyFileError, load_or_create
from config import WorkerSettings, mask_url
from worker.presence import pid_alive


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: WorkerSettings) -> list[Check]:
    checks: list[Check] = [_key_file(settings)]
    redis = open_redis(settings.redis_url, socket_timeout=5, socket_connect_timeout=3, decode_responses=True)
    try:
        redis.ping()
    except RedisError as error:
        return [*checks, Check("redis", False, f"Redis at {mask_url(settings.redis_url)} unreachable: {error}")]
    checks.append(Check("redis", True, f"Redis at {mask_url(settings.redis_url)} answers"))
    try:
        checks.append(_login(redis, settings.worker_name))
        checks.append(_secret_key(redis, settings))
        checks.append(_name(redis, settings.worker_name))
    except RedisError as error:
        checks.append(Check("redis", False, f"Redis failed during the checks: {error}"))
    finally:
        redis.close()
    return checks


def _key_file(settings: WorkerSettings) -> Check:
    """The worker's private key: usable if it is there (made on the first start otherwise; nothing made here)."""
    path = Path(settings.key_file)
    if not path.exists():
        return Check("key", True, f"no key yet: the first start makes it at {path}")
    try:
        pair = load_or_create(path)
    except KeyFileError as error:
        return Check("key", False, f"{path}: {error}")
    return Check("key", True, f"key {pair.fingerprint} ({path})")


def _login(redis: Redis, name: str) -> Check:
    """Which Redis login this worker uses: its own (`run_cli.py add NAME --issue-login`), the shared one (works,
    but any worker on it can touch every other's work), or another worker's (refused: it would run as that one)."""
    try:
        user = str(redis.acl_whoami())
    except RedisError:  # a Redis older than 6 has no logins: the shared one
        user = "default"
    own = f"{keys.WORKER_LOGIN_PREFIX}{name}"
    if user == own:
        return Check("login", True, f"Redis login {user}: this worker's own")
    if user.startswith(keys.WORKER_LOGIN_PREFIX):
        return Check("login", False, f"Redis login {user} is another worker's; this worker's is {own}")
    return Check(
        "login",
        True,
        f"shared Redis login {user!r}: works, but gives this host every worker's keys and queues; "
        f"issue it one of its own: run_cli.py workers login {name}",
    )


def _secret_key(redis: Redis, settings: WorkerSettings) -> Check:
    if settings.secret_key is None:
        return Check("secret_key", True, "no SECRET_KEY: this worker opens only what is sealed to its own key")
    box = SecretBox(settings.secret_key)
    samples = [value for value in [redis.get(keys.SECRET_CANARY)] if value]
    for raw in list(redis.hvals(keys.worker_specs(settings.worker_name)))[:1]:
        try:  # a registry entry is a spec whose secrets are encrypted
            samples.append(str(json.loads(raw)["session_enc"]))
        except (ValueError, KeyError, TypeError):
            continue
    if not samples:
        return Check("secret_key", True, "SECRET_KEY is set (nothing encrypted by the control plane to compare yet)")
    for sample in samples:
        try:
            box.decrypt(sample if isinstance(sample, str) else str(sample))
        except SecretError:
            return Check(
                "secret_key", False, "SECRET_KEY differs from the control host's: it cannot decrypt what that encrypted"
            )
    return Check("secret_key", True, "SECRET_KEY decrypts what the control plane encrypted")


def _name(redis: Redis, name: str) -> Check:
    owner = redis.get(keys.worker_owner(name))
    if owner is None:
        return Check("name", True, f"worker name {name!r} is free")
    holder = presence.read_infos(redis, [name]).get(name)
    if holder is not None and holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return Check("name", True, f"worker name {name!r} was held by a dead process on this host: it will be taken")
    where = f" (host {holder.host}, pid {holder.pid})" if holder else ""
    return Check("name", False, f"worker name {name!r} is in use by a running worker{where}")
