"""`run_cli.py rekey`: re-encrypt and re-hash every stored secret and identity under SECRET_KEY's first key.

Rotation: put the new key first in SECRET_KEY on every host (`SECRET_KEY=new,old`: all keys decrypt, lookups
match under all), restart, run `rekey`, then drop the old key. Covered: accounts (phone, API hash, session,
proxy, 2FA password; the keyed hashes of the phone and the session), the pool's API apps (hash), board users
(Telegram id and its keyed hash), plugins' secret configuration, the workers' spec registries and the admin
bot's wizard state in Redis, and the key canary. A value no listed key can decrypt is counted and left as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from celery_app import keys
from common.crypto import SecretBox, SecretError

BATCH = 500


@dataclass
class RekeyReport:
    accounts: int = 0
    apps: int = 0
    board_users: int = 0
    plugin_configs: int = 0
    redis_entries: int = 0
    failed: list[str] = field(default_factory=list)  # what could not be decrypted, by kind and id (no content)

    def to_json(self) -> dict[str, object]:
        return {
            "accounts": self.accounts,
            "apps": self.apps,
            "board_users": self.board_users,
            "plugin_configs": self.plugin_configs,
            "redis_entries": self.redis_entries,
            "failed": self.failed,
        }


def rekey(sessions: sessionmaker[Session], redis: Redis, box: SecretBox) -> RekeyReport:
    report = RekeyReport()
    _accounts(sessions, box, report)
    _apps(sessions, box, report)
    _board_users(sessions, box, report)
    _proxies(sessions, box, report)
    _plugin_secrets(sessions, box, report)
    _redis(redis, box, report)
    return report


def _proxies(sessions: sessionmaker[Session], box: SecretBox, report: RekeyReport) -> None:
    """The pool's proxies (`database.proxies`): their URLs and the URLs' keyed hashes."""
    from database.proxies import rekey_proxies

    with sessions.begin() as session:
        report.failed += rekey_proxies(session, box)


def _plugin_secrets(sessions: sessionmaker[Session], box: SecretBox, report: RekeyReport) -> None:
    """Plugins' secret configuration values (`backend.plugin_secrets`)."""
    from database.models import AccountPlugin

    with sessions.begin() as session:
        for row in session.scalars(select(AccountPlugin).where(AccountPlugin.secrets_enc.is_not(None))):
            try:
                row.secrets_enc = box.rotate(row.secrets_enc or "")
                report.plugin_configs += 1
            except SecretError:
                report.failed.append(f"plugin {row.plugin} of account {row.account_id}")


def _accounts(sessions: sessionmaker[Session], box: SecretBox, report: RekeyReport) -> None:
    from database.models import Account
    from database.session_keys import stored_session_lookup

    last = 0
    while True:
        with sessions.begin() as session:
            rows = session.scalars(select(Account).where(Account.id > last).order_by(Account.id).limit(BATCH)).all()
            if not rows:
                return
            for account in rows:
                last = account.id
                try:
                    phone = box.decrypt(account.phone_enc)
                    account.phone_enc = box.rotate(account.phone_enc)
                    account.phone_lookup = box.lookup(phone)
                    account.api_hash_enc = box.rotate(account.api_hash_enc)
                    if account.session_enc:
                        account.session_enc = box.rotate(account.session_enc)
                        if account.session_lookup:  # one without is given its own by `session_keys.backfill`
                            account.session_lookup = stored_session_lookup(box, account.session_enc)
                    if account.proxy_enc:
                        account.proxy_enc = box.rotate(account.proxy_enc)
                    if account.password_enc:
                        account.password_enc = box.rotate(account.password_enc)
                    report.accounts += 1
                except SecretError:
                    report.failed.append(f"account {account.id}")


def _apps(sessions: sessionmaker[Session], box: SecretBox, report: RekeyReport) -> None:
    from database.models import ApiApp

    with sessions.begin() as session:  # a pool holds a handful of apps
        for app in session.scalars(select(ApiApp).order_by(ApiApp.id)):
            try:
                app.api_hash_enc = box.rotate(app.api_hash_enc)
                report.apps += 1
            except SecretError:
                report.failed.append(f"app {app.id}")


def _board_users(sessions: sessionmaker[Session], box: SecretBox, report: RekeyReport) -> None:
    from database.board_models import BoardUser

    last = 0
    while True:
        with sessions.begin() as session:
            rows = session.scalars(
                select(BoardUser).where(BoardUser.id > last).order_by(BoardUser.id).limit(BATCH)
            ).all()
            if not rows:
                return
            for user in rows:
                last = user.id
                try:
                    tg_id = box.decrypt(user.tg_enc)
                    user.tg_enc = box.rotate(user.tg_enc)
                    user.tg_lookup = box.lookup(f"board-user:{tg_id}")
                    report.board_users += 1
                except SecretError:
                    report.failed.append(f"board user {user.public_id}")


def _rotated(value: Any, box: SecretBox) -> Any:
    """A JSON document with every `*_enc` string re-encrypted (nested documents too)."""
    if isinstance(value, dict):
        return {
            key: box.rotate(item) if str(key).endswith("_enc") and isinstance(item, str) else _rotated(item, box)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rotated(item, box) for item in value]
    return value


def _redis(redis: Redis, box: SecretBox, report: RekeyReport) -> None:
    for key in redis.scan_iter(match=keys.worker_specs("*"), count=500):
        for account_id, raw in redis.hgetall(key).items():
            try:
                redis.hset(key, account_id, json.dumps(_rotated(json.loads(raw), box)))
                report.redis_entries += 1
            except (SecretError, ValueError):
                report.failed.append(f"worker spec {account_id}")
    for key in redis.scan_iter(match=f"{keys.PREFIX}:bot:fsm:*:data", count=500):
        raw = redis.get(key)
        if not raw:
            continue
        try:
            ttl = redis.pttl(key)
            rotated = json.dumps(_rotated(json.loads(raw), box))
            redis.set(key, rotated, px=ttl if ttl and ttl > 0 else None)
            report.redis_entries += 1
        except (SecretError, ValueError):
            report.failed.append("a wizard's state")
    redis.set(keys.SECRET_CANARY, box.encrypt("fleet"))
