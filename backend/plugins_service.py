"""Plugins per account: enable (with a configuration the plugin's schema accepts), disable, and how they fare.

The database holds what each account should run (`account_plugins`); Redis holds its mirror, which workers
read (`celery_app.plugin_config`): every change rewrites the accounts' mirror and bumps the version, and the
worker running an account applies it without restarting the account. The backend's scan writes the whole
mirror again when Redis lost it, and seals secret values again for the worker an account moved to
(`restore_mirror`). What runs is shown only from the worker's live report.

Configuration a plugin declares secret (`SECRET_CONFIG`) is kept encrypted, shown and audited as `***`, and
mirrored sealed to the account's worker (`backend.plugin_secrets`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import Redis
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from backend.errors import AccountError
from backend.plugin_secrets import (
    MissingSecret,
    PluginMirror,
    Stored,
    masks_kept,
    resolved,
    secret_values,
    stored,
)
from celery_app import keys, plugin_config
from celery_app.plugin_config import PluginStatus
from common.details import detail
from database.audit import audited, named
from database.events import NewEvent, account_subject, record_events
from database.models import Account, AccountPlugin, FleetEventKind, Worker, utcnow
from database.workers import get_worker

if TYPE_CHECKING:
    from common.crypto import SecretBox
    from common.plugin_catalogue import PluginInfo

log = logging.getLogger(__name__)
MAX_CONFIG_BYTES = 64 * 1024
_PLUGIN_TARGETS = named(("plugin", "name"), ("account", "account_ids"), ("worker", "worker"))


@dataclass(frozen=True)
class PluginRow:
    """One plugin enabled for one account, with what its worker reports about it now (None: not running)."""

    account_id: int
    phone_masked: str
    plugin: str
    config: dict[str, Any]
    live: PluginStatus | None

    @property
    def state(self) -> str:
        return self.live.state if self.live is not None else "not running"

    def to_json(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "phone": self.phone_masked,
            "plugin": self.plugin,
            "config": self.config,
            "state": self.state,
            "errors": self.live.errors if self.live else 0,
            "last_error": (self.live.last_error or None) if self.live else None,
        }


def parse_config(text: str) -> dict[str, Any]:
    """A plugin configuration from JSON text: an object, or a clear AccountError."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise AccountError(
            f"the configuration is larger than {MAX_CONFIG_BYTES // 1024} KB",
            "config_too_large",
            kb=MAX_CONFIG_BYTES // 1024,
        )
    try:
        config = json.loads(text)
    except ValueError as error:
        raise AccountError(
            f"the configuration is not valid JSON ({error})", "config_not_json", problem=str(error)
        ) from None
    if not isinstance(config, dict):
        raise AccountError("the configuration must be a JSON object", "config_not_object")
    return config


class PluginsService:
    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        plugins_dir: str | None = None,
        box: Callable[[], SecretBox] | None = None,
    ) -> None:
        """`box` gives SECRET_KEY's box, asked for only when a configuration has secret values."""
        self.redis = redis
        self.sessions = sessions
        self.plugins_dir = plugins_dir
        self._catalogue: dict[str, PluginInfo] | None = None
        self._box = box
        self.mirror = PluginMirror(redis, self.box)

    def box(self) -> SecretBox:
        if self._box is None:
            raise AccountError(
                "this process has no SECRET_KEY, which secret plugin configuration needs", "plugin_secret_no_key"
            )
        return self._box()

    def catalogue(self) -> dict[str, PluginInfo]:
        """The plugins found on this host (entry points, PLUGINS_DIR, the shipped ones); workers find theirs."""
        if self._catalogue is None:
            from common.plugin_catalogue import discover

            self._catalogue = discover(self.plugins_dir)
        return self._catalogue

    def plugin(self, name: str) -> PluginInfo:
        catalogue = self.catalogue()
        info = catalogue.get(name)
        if info is None:
            known = ", ".join(sorted(catalogue)) or "none"
            raise AccountError(f"unknown plugin {name!r}; available: {known}", "unknown_plugin", name=name, known=known)
        if info.error:
            raise AccountError(
                f"plugin {name!r} cannot be loaded: {info.error}", "plugin_broken", name=name, problem=info.error
            )
        return info

    def validate(self, name: str, config: dict[str, Any]) -> None:
        from common.plugin_catalogue import validate_config

        problems = validate_config(self.plugin(name), config)
        if problems:
            listed = "; ".join(problems[:5])
            raise AccountError(
                f"the configuration does not fit plugin {name!r}: {listed}",
                "invalid_config",
                plugin=name,
                problems=listed,
            )

    # --- changes

    def _accounts(self, session: Session, account_ids: Iterable[int], worker: str | None) -> list[Account]:
        ids = sorted(set(account_ids))
        if worker:
            worker_row = get_worker(session, worker)
            found = list(session.scalars(select(Account).where(Account.worker_id == worker_row.id)))
            if ids:
                found = [a for a in found if a.id in set(ids)]
        else:
            found = list(session.scalars(select(Account).where(Account.id.in_(ids))))
            missing = [str(i) for i in ids if i not in {a.id for a in found}]
            if missing:
                listed = ", ".join(missing)
                raise AccountError(f"no account with id {listed}", "accounts_not_found", ids=listed)
        if not found:
            raise AccountError("no accounts match", "no_accounts")
        return found

    def _shown(self, params: dict[str, Any]) -> dict[str, Any]:
        """The audited parameters with the plugin's secret configuration values masked (all of them when the
        plugin is not known here)."""
        from common.plugin_catalogue import shown_config

        config = params.get("config")
        if isinstance(config, dict):
            info = self.catalogue().get(str(params.get("name")))
            params = {**params, "config": shown_config(info, config)}
        return params

    @audited(
        "plugin.enable",
        _PLUGIN_TARGETS,
        params=("name", "config", "worker"),
        shown=lambda service, params: service._shown(params),
    )
    def enable(
        self, name: str, account_ids: Iterable[int], config: dict[str, Any], actor: str, worker: str | None = None
    ) -> list[int]:
        """Enable (or reconfigure) `name` for the accounts; all or nothing: any refusal changes nothing. A
        secret key's value given as `***` keeps the value stored for each account (refused where none is)."""
        secret = self.plugin(name).secret_keys
        keeping = masks_kept(config, secret)
        if not keeping:
            self.validate(name, config)
            given = stored(config, secret, self.box)
        with self.sessions.begin() as session:
            accounts = self._accounts(session, account_ids, worker)
            deactivated = self._on_deactivated_workers(session, accounts)
            if deactivated:
                raise AccountError(
                    "; ".join(f"account {a} is on deactivated worker {w!r}" for a, w in deactivated[:5])
                    + ": activate the worker or move the accounts first",
                    "accounts_on_deactivated",
                    accounts=", ".join(f"#{a} ({w})" for a, w in deactivated[:5]),
                )
            ids = [a.id for a in accounts]
            existing = {
                row.account_id: row
                for row in session.scalars(
                    select(AccountPlugin).where(AccountPlugin.account_id.in_(ids), AccountPlugin.plugin == name)
                )
            }
            now = utcnow()
            for account_id in ids:
                row = existing.get(account_id)
                this = self._keeping(name, account_id, config, secret, row) if keeping else given
                if row is None:
                    session.add(
                        AccountPlugin(
                            account_id=account_id,
                            plugin=name,
                            config=this.config,
                            secrets_enc=this.secrets_enc,
                            actor=actor[:64],
                            created_at=now,
                        )
                    )
                else:
                    row.config, row.secrets_enc = this.config, this.secrets_enc
                    row.actor, row.updated_at = actor[:64], now
            named = detail("plugin_name", plugin=name)
            record_events(
                session,
                [NewEvent(FleetEventKind.PLUGIN_ENABLED, account_subject(i), named, actor) for i in ids],
            )
            session.flush()
            self._mirror(session, ids)
        return ids

    def _keeping(
        self, name: str, account_id: int, config: dict[str, Any], secret: frozenset[str], row: AccountPlugin | None
    ) -> Stored:
        """`config` for one account whose stored secret values it keeps (given as `***`), checked and split."""
        from common.crypto import SecretError

        try:
            clear = resolved(config, secret, secret_values(self.box(), row.secrets_enc if row else None))
        except MissingSecret as missing:
            raise AccountError(
                f"account {account_id} has no stored value of {missing.key!r} to keep (*** keeps the stored one): "
                "give the value itself",
                "plugin_secret_not_stored",
                id=account_id,
                field=missing.key,
            ) from None
        except (SecretError, ValueError):
            raise AccountError(
                f"the stored secret configuration of account {account_id} does not open with this SECRET_KEY: "
                "give the values themselves",
                "plugin_secret_unreadable",
                id=account_id,
            ) from None
        self.validate(name, clear)
        return stored(clear, secret, self.box)

    @audited("plugin.disable", _PLUGIN_TARGETS, params=("name", "worker"))
    def disable(self, name: str, account_ids: Iterable[int], actor: str, worker: str | None = None) -> list[int]:
        """Disable `name` for the accounts (those without it are left alone); returns those it was on."""
        with self.sessions.begin() as session:
            accounts = self._accounts(session, account_ids, worker)
            ids = [a.id for a in accounts]
            had = list(
                session.scalars(
                    select(AccountPlugin.account_id).where(
                        AccountPlugin.account_id.in_(ids), AccountPlugin.plugin == name
                    )
                )
            )
            if not had:
                return []
            session.execute(
                delete(AccountPlugin).where(AccountPlugin.account_id.in_(had), AccountPlugin.plugin == name)
            )
            named = detail("plugin_name", plugin=name)
            record_events(
                session,
                [NewEvent(FleetEventKind.PLUGIN_DISABLED, account_subject(i), named, actor) for i in had],
            )
            self._mirror(session, had)
        return sorted(had)

    @staticmethod
    def _on_deactivated_workers(session: Session, accounts: list[Account]) -> list[tuple[int, str]]:
        worker_ids = {a.worker_id for a in accounts if a.worker_id is not None}
        if not worker_ids:
            return []
        inactive = {
            w.id: w.name
            for w in session.scalars(select(Worker).where(Worker.id.in_(worker_ids), Worker.is_active.is_(False)))
        }
        return [(a.id, inactive[a.worker_id]) for a in accounts if a.worker_id in inactive]

    def _mirror(self, session: Session, account_ids: list[int]) -> None:
        self.mirror.write(session, account_ids)

    def restore_mirror(self) -> bool:
        """Called after every scan: write the whole mirror again if Redis lost it (the version counter is gone;
        then True), else seal secret values again where the account's worker or its key changed."""
        if plugin_config.version(self.redis) is not None:
            with self.sessions() as session:
                self.mirror.reseal(session)
            return False
        with self.sessions() as session:
            written = self.mirror.write(session, None)
        # A version no worker has applied yet (a counter restarted from 0 could repeat one), so every worker
        # re-reads its accounts' configuration.
        self.redis.set(keys.PLUGINS_VERSION, time.time_ns() // 1_000_000)
        log.info("plugin configuration of %d account(s) written to Redis again", written)
        return True

    # --- views

    def status(
        self,
        account_ids: Iterable[int] = (),
        worker: str | None = None,
        plugin: str | None = None,
        running: set[int] | None = None,
    ) -> list[PluginRow]:
        """Every enabled plugin of the accounts (all if none given), with its live status where it runs:
        given `running` (the accounts a live worker reports running), a status left behind by a worker that
        died is not shown as a fact."""
        with self.sessions() as session:
            query = (
                select(AccountPlugin, Account.phone_masked, Worker.name.label("worker_name"))
                .join(Account, Account.id == AccountPlugin.account_id)
                .outerjoin(Worker, Worker.id == Account.worker_id)
            )
            ids = sorted(set(account_ids))
            if ids:
                query = query.where(AccountPlugin.account_id.in_(ids))
            if worker:
                query = query.where(Account.worker_id == get_worker(session, worker).id)
            if plugin:
                query = query.where(AccountPlugin.plugin == plugin)
            rows = session.execute(query.order_by(AccountPlugin.account_id, AccountPlugin.plugin)).all()
        live = plugin_config.read_status(
            self.redis, {row.AccountPlugin.account_id: row.worker_name for row in rows if row.worker_name is not None}
        )
        result = []
        for row in rows:
            enabled: AccountPlugin = row.AccountPlugin
            try:
                config = json.loads(enabled.config)
            except ValueError:
                config = {}
            result.append(
                PluginRow(
                    enabled.account_id,
                    row.phone_masked,
                    enabled.plugin,
                    config if isinstance(config, dict) else {},
                    None
                    if running is not None and enabled.account_id not in running
                    else live.get(enabled.account_id, {}).get(enabled.plugin),
                )
            )
        return result
