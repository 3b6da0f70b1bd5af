"""Plugin configuration marked secret (a plugin's `SECRET_CONFIG`): encrypted with SECRET_KEY in the database,
shown as `***`, and in Redis only sealed to the worker that runs the account.

Database (`AccountPlugin`): `config` is the configuration with MASK in place of each secret value, so whatever
shows it shows no secret; `secrets_enc` holds the secret values (a JSON object key -> value) encrypted with
SECRET_KEY. `stored` makes the two from a configuration as given; MASK given for a secret key keeps the value
stored before (what `plugins status --json` shows can be given back as it is).

Mirror (`celery_app.plugin_config`): `PluginMirror.write` writes accounts' mirrors from the database with each
secret value sealed (`common.sealing`) to the public key pinned for the account's worker, as
`plugin_config.sealed_field(account, plugin, key)`: only that worker opens it, and only as that value. While the
worker has no pinned key (or the account no worker) the value is left out — the plugin reads it as missing —
and that is logged once. Each mirror records the key it was sealed to; `reseal` rewrites the mirrors whose record
is not the key pinned for the account's worker now (a move, a first pinned key, a trusted or rotated one): the
backend calls it every scan and a move at once, so the mirror follows the account whoever moved it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from celery_app import plugin_config
from common.crypto import SecretBox, SecretError
from common.plugin_catalogue import MASK
from common.sealing import seal
from database.models import Account, AccountPlugin, Worker

log = logging.getLogger(__name__)
BATCH = 500  # accounts' mirrors rewritten per transaction


class MissingSecret(ValueError):
    """MASK was given for a secret key (keep the stored value) but the account has none stored."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Stored:
    """A configuration as the database keeps it."""

    config: str  # JSON, MASK in place of each secret value
    secrets_enc: str | None  # the secret values (JSON object), encrypted with SECRET_KEY; None without any


def secret_values(box: SecretBox, secrets_enc: str | None) -> dict[str, Any]:
    """The secret values kept in `secrets_enc` (empty without); SecretError when SECRET_KEY does not open them."""
    if not secrets_enc:
        return {}
    values = json.loads(box.decrypt(secrets_enc))
    return values if isinstance(values, dict) else {}


def masks_kept(config: Mapping[str, Any], secret_keys: Collection[str]) -> bool:
    """Whether `config` asks to keep a stored secret value (MASK given for a secret key)."""
    return any(config.get(key) == MASK for key in secret_keys)


def resolved(config: Mapping[str, Any], secret_keys: Collection[str], kept: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with MASK for a secret key replaced by the value stored before (`kept`); MissingSecret without."""
    result = dict(config)
    for key in sorted(secret_keys):
        if result.get(key) == MASK:
            if key not in kept:
                raise MissingSecret(key)
            result[key] = kept[key]
    return result


def stored(config: Mapping[str, Any], secret_keys: Collection[str], box: Callable[[], SecretBox]) -> Stored:
    """`config` (with clear values) split as the database keeps it; SECRET_KEY is asked for only if it has
    secret values."""
    secrets = {key: config[key] for key in sorted(secret_keys) if config.get(key) not in (None, "")}
    shown = {key: MASK if key in secrets else value for key, value in config.items()}
    text = json.dumps(shown, sort_keys=True, separators=(",", ":"))
    if not secrets:
        return Stored(text, None)
    return Stored(text, box().encrypt(json.dumps(secrets, sort_keys=True, separators=(",", ":"))))


class PluginMirror:
    """Writes accounts' plugin mirrors in Redis from the database, secret values sealed to the account's worker."""

    def __init__(self, redis: Redis, box: Callable[[], SecretBox]) -> None:
        self.redis = redis
        self.box = box  # asked for only when an account has secret values
        self._said: set[tuple[int, str, str]] = set()  # (account, plugin, why) already logged

    def desired(
        self, session: Session, account_ids: list[int] | None
    ) -> tuple[dict[int, dict[str, dict[str, Any]]], dict[int, str]]:
        """What the mirrors of the accounts (all if None) should hold, and the key each account with secret
        values is sealed to ("" when they are left out)."""
        query = (
            select(
                AccountPlugin.account_id,
                AccountPlugin.plugin,
                AccountPlugin.config,
                AccountPlugin.secrets_enc,
                Worker.name,
                Worker.public_key,
            )
            .join(Account, Account.id == AccountPlugin.account_id)
            .outerjoin(Worker, Worker.id == Account.worker_id)
        )
        if account_ids is not None:
            query = query.where(AccountPlugin.account_id.in_(account_ids))
        desired: dict[int, dict[str, dict[str, Any]]] = {i: {} for i in account_ids or []}
        sealed_to: dict[int, str] = {}
        for account_id, plugin, text, secrets_enc, worker, key in session.execute(query):
            try:
                config = json.loads(text)
            except ValueError:
                config = None
            if not isinstance(config, dict):
                log.warning("account %d: plugin %r has an unreadable configuration; not mirrored", account_id, plugin)
                continue
            if secrets_enc:
                config, sealed = self._sealed(account_id, plugin, config, secrets_enc, worker, key)
                sealed_to[account_id] = sealed if sealed_to.get(account_id, sealed) == sealed else ""
            desired.setdefault(account_id, {})[plugin] = config
        return desired, sealed_to

    def _sealed(
        self,
        account_id: int,
        plugin: str,
        config: dict[str, Any],
        secrets_enc: str,
        worker: str | None,
        key: str | None,
    ) -> tuple[dict[str, Any], str]:
        """`config` with its secret values sealed to `key`, or without them (logged once); and what the mirror
        records: `key`, or "" while another try may do better (no key pinned, no SECRET_KEY in this process)."""
        if not key:
            where = f"worker {worker!r} has no pinned key yet" if worker else "the account has no worker"
            return self._left_out(account_id, plugin, config, f"unpinned:{worker}", where)
        try:
            values = secret_values(self.box(), secrets_enc)
        except (SecretError, ValueError):
            said = "they do not open with this SECRET_KEY"  # trying again each scan would not help
            return self._left_out(account_id, plugin, config, "unreadable", said)[0], key
        except Exception as error:  # noqa: BLE001 - no SECRET_KEY in this process: the backend's scan seals them
            return self._left_out(account_id, plugin, config, "no box", str(error))
        for name, value in values.items():
            config[name] = seal(key, str(value), plugin_config.sealed_field(account_id, plugin, name))
        return config, key

    def _left_out(
        self, account_id: int, plugin: str, config: dict[str, Any], why: str, said: str
    ) -> tuple[dict[str, Any], str]:
        if (account_id, plugin, why) not in self._said:
            if len(self._said) >= 10_000:
                self._said.clear()
            self._said.add((account_id, plugin, why))
            log.warning(
                "account %d: plugin %r: secret configuration left out of the mirror (%s): the plugin runs without "
                "it until it can be sealed to the account's worker",
                account_id,
                plugin,
                said,
            )
        return {name: value for name, value in config.items() if value != MASK}, ""

    def write(self, session: Session, account_ids: list[int] | None) -> int:
        """Rewrite the mirrors of the accounts (all of them if None, in batches); how many accounts it wrote."""
        if account_ids is not None:
            desired, sealed_to = self.desired(session, account_ids)
            plugin_config.write_desired_many(self.redis, desired, sealed_to)
            return len(desired)
        ids = sorted(set(session.scalars(select(AccountPlugin.account_id))))
        for start in range(0, len(ids), BATCH):
            self.write(session, ids[start : start + BATCH])
        return len(ids)

    def reseal(self, session: Session, account_ids: Iterable[int] | None = None) -> list[int]:
        """Rewrite the mirrors of the accounts with secret values (of `account_ids`, or all) that are not sealed
        to the key pinned for the account's worker now; the accounts it rewrote."""
        query = (
            select(AccountPlugin.account_id, Worker.public_key)
            .join(Account, Account.id == AccountPlugin.account_id)
            .outerjoin(Worker, Worker.id == Account.worker_id)
            .where(AccountPlugin.secrets_enc.is_not(None))
        )
        if account_ids is not None:
            query = query.where(AccountPlugin.account_id.in_(list(account_ids)))
        wanted = {account_id: key or "" for account_id, key in session.execute(query)}
        if not wanted:
            return []
        recorded = plugin_config.read_sealed_to(self.redis, sorted(wanted))
        stale = sorted(account_id for account_id, key in wanted.items() if recorded.get(account_id) != key)
        for start in range(0, len(stale), BATCH):
            self.write(session, stale[start : start + BATCH])
        if stale:
            log.info("plugin secrets of %d account(s) sealed again for the worker that runs them", len(stale))
        return stale
