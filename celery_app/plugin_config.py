"""Plugins in Redis: which ones each account should run with what configuration, and how they fare.

Desired state: `keys.account_plugins(id)`, a hash plugin name -> JSON config, is the database's mirror. The
control plane rewrites accounts' hashes with `write_desired_many`, which bumps `keys.PLUGINS_VERSION` in the
same transaction; a worker compares `version` with the one it last applied and re-reads the hashes of its
running accounts (`read_desired`) when it differs. `version` is None when the counter is missing (Redis lost
its data): the control plane writes the mirror again.

Observed state: `keys.plugin_status(id)`, a hash plugin name -> JSON {state, errors, last_error, at}, written
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


def write_desired_many(redis: Redis, desired: Mapping[int, Mapping[str, Mapping[str, Any]]]) -> None:
    """Replace the plugins each account should run (id -> {name -> config}; empty: none), in one transaction
    that bumps the version once."""
    if not desired:
        return
    pipe = redis.pipeline(transaction=True)
    for account_id, configs in desired.items():
        key = keys.account_plugins(account_id)
        pipe.delete(key)
        if configs:
            pipe.hset(key, mapping={name: _encode(config) for name, config in configs.items()})
    pipe.incr(keys.PLUGINS_VERSION)
    pipe.execute()


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


def read_status(redis: Redis, account_ids: Iterable[int]) -> dict[int, dict[str, PluginStatus]]:
    """account id -> plugin name -> its status as the worker running the account reports it; one round trip."""
    ids = list(account_ids)
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hgetall(keys.plugin_status(account_id))
    result: dict[int, dict[str, PluginStatus]] = {}
    for account_id, raw in zip(ids, pipe.execute(), strict=True):
        statuses: dict[str, PluginStatus] = {}
        for name, value in (raw or {}).items():
            status = PluginStatus.from_json(value)
            if status is not None:
                statuses[_text(name)] = status
        result[account_id] = statuses
    return result
