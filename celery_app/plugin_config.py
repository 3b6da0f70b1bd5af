"""Plugins in Redis: which ones each account should run with what configuration, and how they fare.

Desired state: `keys.account_plugins(id)`, a hash plugin name -> JSON config, is the database's mirror. The
control plane rewrites accounts' hashes with `write_desired_many`, which bumps `keys.PLUGINS_VERSION` in the
same transaction; a worker compares `version` with the one it last applied and re-reads the hashes of its
running accounts (`read_desired`) when it differs. `version` is None when the counter is missing (Redis lost
its data): the control plane writes the mirror again.

A value the plugin declares secret is in the mirror only sealed to the worker that runs the account
(`common.sealing`, as `sealed_field(account, plugin, key)`), or not at all while that worker has no pinned key;
the hash's `SEALED_TO` field says which public key its values are sealed to ("" none), so the control plane
sees which mirrors a move or a new key left behind. Fields starting with "$" are not plugins (a plugin's name
cannot start so).

Observed state: `keys.plugin_status(worker, id)`, a hash plugin name -> JSON {state, errors, last_error, at}, written
by the worker running the account (`worker.plugins`) and read by the CLI, the bot and the backend
(`read_status`).

Shared by the worker and the control plane: only Redis and the standard library here.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis

from celery_app import keys
from common.details import Detail

log = logging.getLogger(__name__)


class PluginState(enum.StrEnum):
    RUNNING = "running"  # loaded, no error so far
    FAILING = "failing"  # loaded, but its handlers or tasks raised (see errors and last_error)
    ERROR = "error"  # could not be loaded (unknown, import error, bad config, setup raised): not running
    BLOCKED = "blocked"  # blocked its event loop longer than PLUGIN_BLOCK_SECONDS


@dataclass(frozen=True)
class PluginStatus:
    state: str  # a PluginState value
    errors: int = 0
    last_error: str = ""  # in English, for the CLI and the logs
    at: float = 0.0  # epoch seconds of the last change
    code: str = ""  # the last error as a code with parameters (`common.details.Detail.encode`), for the bots

    @property
    def coded(self) -> Detail | None:
        return Detail.decode(self.code)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> PluginStatus | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["state"]),
                int(data.get("errors", 0)),
                str(data.get("last_error", "")),
                float(data.get("at", 0)),
                str(data.get("code", "")),
            )
        except (ValueError, TypeError, KeyError):
            return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _encode(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


SEALED_TO = "$sealed_to"  # the mirror's field naming the public key its secret values are sealed to


def sealed_field(account_id: int, plugin: str, key: str) -> str:
    """What a secret configuration value is sealed as: it opens for this account, plugin and key only."""
    return f"plugin:{account_id}:{plugin}:{key}"


def write_desired_many(
    redis: Redis,
    desired: Mapping[int, Mapping[str, Mapping[str, Any]]],
    sealed_to: Mapping[int, str] | None = None,
) -> None:
    """Replace the plugins each account should run (id -> {name -> config}; empty: none), in one transaction
    that bumps the version once; `sealed_to` gives, for the accounts with secret values, the public key they
    are sealed to ("" when they were left out)."""
    if not desired:
        return
    sealed_to = sealed_to or {}
    pipe = redis.pipeline(transaction=True)
    for account_id, configs in desired.items():
        key = keys.account_plugins(account_id)
        pipe.delete(key)
        if configs:
            pipe.hset(key, mapping={name: _encode(config) for name, config in configs.items()})
            if account_id in sealed_to:
                pipe.hset(key, SEALED_TO, sealed_to[account_id])
    pipe.incr(keys.PLUGINS_VERSION)
    pipe.execute()


def read_sealed_to(redis: Redis, account_ids: Iterable[int]) -> dict[int, str | None]:
    """account id -> the public key its mirror's secret values are sealed to ("" none; None: no such field)."""
    ids = list(account_ids)
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hget(keys.account_plugins(account_id), SEALED_TO)
    return {
        account_id: None if raw is None else _text(raw) for account_id, raw in zip(ids, pipe.execute(), strict=True)
    }


def read_desired(redis: Redis, account_ids: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """account id -> plugin name -> config, for every account asked (empty when it has none); one round trip.

    An entry that is not a JSON object is skipped (and logged): the worker runs the account without it.
    """
    ids = list(account_ids)
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hgetall(keys.account_plugins(account_id))
    result: dict[int, dict[str, dict[str, Any]]] = {}
    for account_id, raw in zip(ids, pipe.execute(), strict=True):
        configs: dict[str, dict[str, Any]] = {}
        for name, value in (raw or {}).items():
            if _text(name).startswith("$"):
                continue  # the mirror's own bookkeeping (SEALED_TO), not a plugin
            try:
                config = json.loads(value)
            except ValueError:
                config = None
            if isinstance(config, dict):
                configs[_text(name)] = config
            else:
                log.warning("account %d: plugin %r has a malformed configuration in Redis; skipped", account_id, name)
        result[account_id] = configs
    return result


def version(redis: Redis) -> int | None:
    """The configuration version; None when the counter is missing (Redis lost its data)."""
    raw = redis.get(keys.PLUGINS_VERSION)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def read_status(redis: Redis, where: Mapping[int, str]) -> dict[int, dict[str, PluginStatus]]:
    """account id -> plugin name -> its status as the worker running the account (account id -> worker name)
    reports it, in that worker's own keys; one round trip."""
    ids = list(where)
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hgetall(keys.plugin_status(where[account_id], account_id))
    result: dict[int, dict[str, PluginStatus]] = {}
    for account_id, raw in zip(ids, pipe.execute(), strict=True):
        statuses: dict[str, PluginStatus] = {}
        for name, value in (raw or {}).items():
            status = PluginStatus.from_json(value)
            if status is not None:
                statuses[_text(name)] = status
        result[account_id] = statuses
    return result
