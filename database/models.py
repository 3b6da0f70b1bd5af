"""SQLAlchemy 2 typed models: workers, accounts, the pools of API apps and proxies, the fleet event log, the
admins with their roles and the audit log."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch_to_datetime(seconds: float) -> datetime:
    """An epoch time (as Redis and the workers give it) as the aware UTC datetime the columns take."""
    return datetime.fromtimestamp(seconds, UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC as a naive timestamp (portable to SQLite) and always returns an aware UTC datetime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class WorkerStatus(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Worker(Base):
    """A server running `run_worker.py`, known by its unique name."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.OFFLINE.value)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The worker's public key (common.sealing), pinned the first time a worker of this name presented one, and
    # a different one presented since: until an admin trusts it (`workers trust`), the worker is given no work.
    public_key: Mapped[str | None] = mapped_column(String(64))
    pending_key: Mapped[str | None] = mapped_column(String(64))


class FleetEventKind(enum.StrEnum):
    WORKER_DISCOVERED = "worker.discovered"
    WORKER_ONLINE = "worker.online"
    WORKER_OFFLINE = "worker.offline"
    WORKER_ACTIVATED = "worker.activated"
    WORKER_DEACTIVATED = "worker.deactivated"
    WORKER_ADDED = "worker.added"
    WORKER_REMOVED = "worker.removed"
    WORKER_KEY_PINNED = "worker.key_pinned"  # its public key, trusted on first sight
    WORKER_KEY_CHANGED = "worker.key_changed"  # a different key presented: no work until trusted (alerted)
    WORKER_KEY_TRUSTED = "worker.key_trusted"  # an admin accepted the new key
    WORKER_KEY_ROTATED = "worker.key_rotated"  # the worker made a new key pair on an admin's request, pinned
    ACCOUNT_IMPORTED = "account.imported"
    ACCOUNT_LOGGED_IN = "account.logged_in"
    ACCOUNT_START_REQUESTED = "account.start_requested"
    ACCOUNT_STOP_REQUESTED = "account.stop_requested"
    ACCOUNT_STATUS = "account.status"
    ACCOUNT_MOVED = "account.moved"
    ACCOUNT_REMOVED = "account.removed"
    ACCOUNT_EXPORTED = "account.exported"  # its session written out (`backend.session_export`)
    ACCOUNT_CHECKED = "account.checked"
    APP_ADDED = "app.added"  # an API app put into the pool (`database.apps`)
    APP_CHANGED = "app.changed"
    APP_REMOVED = "app.removed"
    ACCOUNT_VERDICT_WORSE = "account.verdict_worse"
    OPERATION_FINISHED = "operation.finished"
    PLUGIN_ENABLED = "plugin.enabled"
    PLUGIN_DISABLED = "plugin.disabled"
    PLUGIN_EVENT = "plugin.event"
    PLUGIN_ALERT = "plugin.alert"
    PLUGIN_ERROR = "plugin.error"
    PROXY_ADDED = "proxy.added"
    PROXY_REMOVED = "proxy.removed"
    PROXY_DEAD = "proxy.dead"  # the admin bot alerts on it
    PROXY_ALIVE = "proxy.alive"  # back after being dead
    PROXY_NO_SPARE = "proxy.no_spare"  # dead, and no live proxy of its group can take its accounts
    ACCOUNT_PROXY = "account.proxy"  # its proxy pin changed (by an admin, or moved off a dead proxy)


class FleetEvent(Base):
    """One line of the fleet's history; the bot notifies admins from it (ids only grow).

    The same transition repeated within an hour (a flapping account or worker) is folded into one row:
    `repeat_count` says how often, `created_at` is the first time and `last_at` the latest (the row moves
    to the end of the log with a new id, so readers of new events see each repetition once).
    Rows whose `last_at` is older than EVENT_RETENTION_DAYS are pruned by the backend.
    """

    __tablename__ = "fleet_events"
    __table_args__ = (
        Index("ix_fleet_events_subject_id", "subject", "id"),
        Index("ix_fleet_events_subject_last_at", "subject", "last_at"),
        Index("ix_fleet_events_last_at", "last_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    repeat_count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="")  # in English (the CLI, the logs)
    detail_code: Mapped[str] = mapped_column(Text, default="", server_default="")  # `common.details`, JSON
    actor: Mapped[str] = mapped_column(String(64), default="system")


class DesiredState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


def _chosen_device(field: str) -> Callable[[Any], str]:
    """A column default: `field` of the device identity chosen for the row's phone (`common.devices`), so
    that a row inserted without one still gets the identity the account would have been given anyway."""

    def default(context: Any) -> str:
        from common.devices import choose_identity

        seed = context.get_current_parameters().get("phone_lookup") or ""
        return str(getattr(choose_identity(seed), field))

    return default


class Account(Base):
    """A Telegram user account; its secrets and phone number are Fernet tokens (see `common.crypto`).

    The phone number is kept three ways, none of them clear: encrypted (`phone_enc`, for the worker that
    logs in), as a keyed hash (`phone_lookup`, unique: "is this number known?") and masked for display.
    The `device_*` columns are the device identity it presents to Telegram on every connect (chosen once, or
    the one an imported session had; `common.devices`), never changed afterwards.
    `app_id` is the pooled API app it was given (`ApiApp`; its `api_id`/`api_hash_enc` are copied here, which is
    what the worker gets); NULL for an account that came with credentials of its own. `session_lookup` is a
    keyed hash of its session's auth key (`database.session_keys`): one session, one account.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_worker_id_status", "worker_id", "status"),
        Index("uq_accounts_session_lookup", "session_lookup", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    phone_masked: Mapped[str] = mapped_column(String(32))
    api_id: Mapped[int] = mapped_column(Integer)
    api_hash_enc: Mapped[str] = mapped_column(Text)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("api_apps.id", ondelete="RESTRICT"), index=True)
    session_enc: Mapped[str | None] = mapped_column(Text)
    session_lookup: Mapped[str | None] = mapped_column(String(64))
    proxy_enc: Mapped[str | None] = mapped_column(Text)
    password_enc: Mapped[str | None] = mapped_column(Text)  # its 2FA password, when known (never shown)
    # The pool proxy it is pinned to (`Proxy`); `proxy_enc` then holds that proxy's URL, as the worker takes it.
    proxy_id: Mapped[int | None] = mapped_column(ForeignKey("proxies.id", ondelete="RESTRICT"), index=True)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="RESTRICT"))
    desired_state: Mapped[str] = mapped_column(String(16), default=DesiredState.STOPPED.value)
    status: Mapped[str] = mapped_column(String(20), default="stopped")
    status_detail: Mapped[str] = mapped_column(Text, default="")  # in English (the CLI, the logs)
    status_code: Mapped[str] = mapped_column(Text, default="", server_default="")  # `common.details`, JSON
    flood_wait_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tg_user_id: Mapped[int | None] = mapped_column(BigInteger)
    tg_username: Mapped[str | None] = mapped_column(String(64))
    tg_name: Mapped[str | None] = mapped_column(String(255))
    device_model: Mapped[str] = mapped_column(String(128), default=_chosen_device("device_model"))
    device_system_version: Mapped[str] = mapped_column(String(128), default=_chosen_device("system_version"))
    device_app_version: Mapped[str] = mapped_column(String(64), default=_chosen_device("app_version"))
    device_lang_code: Mapped[str] = mapped_column(String(16), default=_chosen_device("lang_code"))
    device_system_lang_code: Mapped[str] = mapped_column(String(16), default=_chosen_device("system_lang_code"))
    device_lang_pack: Mapped[str] = mapped_column(String(32), default=_chosen_device("lang_pack"))
    # The last `check` (`celery_app.operations`): its verdict, when, and its one-line summary.
    check_verdict: Mapped[str | None] = mapped_column(String(16))
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    check_summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    check_result: Mapped[str] = mapped_column(Text, default="", server_default="")  # JSON: what the bots render
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ApiApp(Base):
    """An API app (api_id and hash from my.telegram.org) in the pool that logins and imports without their own
    credentials draw from (`database.apps`). The hash is a Fernet token, never shown.

    `max_accounts` (NULL: no cap) bounds the accounts using the app plus the logins in progress that claimed it
    (`ApiAppClaim`). The database holds the cap: triggers (migration 0010) refuse the row that would go over
    it, whoever writes it. A later migration that rebuilds `accounts` or `api_app_claims` on SQLite must create
    those triggers again.
    """

    __tablename__ = "api_apps"
    __table_args__ = (CheckConstraint("max_accounts IS NULL OR max_accounts >= 1", name="max_accounts_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_id: Mapped[int] = mapped_column(Integer, unique=True)
    api_hash_enc: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(64), default="")
    max_accounts: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiAppClaim(Base):
    """A login in progress holding a place under its app's cap until it ends (then its account holds it) or
    `expires_at` passes (an abandoned login; expired claims are deleted before the next pick)."""

    __tablename__ = "api_app_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("api_apps.id", ondelete="CASCADE"), index=True)
    login_id: Mapped[str] = mapped_column(String(32), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AccountOperation(Base):
    """One operation (`celery_app.operations`) on one account; a `batch` groups those asked for together.

    `params` is the operation's parameters as sent (JSON: a 2FA password in it is a Fernet token, never clear
    text), kept so that an operation whose worker went away can be sent again.
    """

    __tablename__ = "account_operations"
    __table_args__ = (
        Index("ix_account_operations_batch", "batch"),
        Index("ix_account_operations_status", "status"),
        Index("ix_account_operations_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON; a 2FA password in it is encrypted
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[str] = mapped_column(Text, default="")  # JSON
    error: Mapped[str] = mapped_column(Text, default="")  # in English (the CLI, the logs)
    error_code: Mapped[str] = mapped_column(Text, default="", server_default="")  # `common.details`, JSON
    worker: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(64), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AccountPlugin(Base):
    """A plugin enabled for an account, with its configuration (JSON, valid for the plugin's schema).

    The values of the keys the plugin declares secret are not in `config` (which shows `***` in their place) but
    in `secrets_enc`: a JSON object key -> value, encrypted with SECRET_KEY (`backend.plugin_secrets`).
    """

    __tablename__ = "account_plugins"
    __table_args__ = (Index("uq_account_plugins_account_id_plugin", "account_id", "plugin", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    plugin: Mapped[str] = mapped_column(String(64))
    config: Mapped[str] = mapped_column(Text, default="{}")
    secrets_enc: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ProxyState(enum.StrEnum):
    UNKNOWN = "unknown"  # not checked yet
    ALIVE = "alive"
    SLOW = "slow"  # alive, but its checks take longer than PROXY_SLOW_MS
    DEAD = "dead"  # PROXY_DEAD_AFTER failed checks in a row, and none succeeding


class Proxy(Base):
    """A proxy of the pool (`database.proxies`): its URL encrypted (credentials in it), a keyed hash of the URL
    (unique), and what may be shown: `display` is scheme://host:port with the user masked.

    Accounts are pinned to one (`Account.proxy_id`); `max_accounts` (NULL: no cap) bounds how many, held by
    the database (triggers of migration 0011, like the API apps' caps). Its health is what workers' checks
    say (`backend.proxy_health`): `state`, the latest latency, when, the last error code and how many checks
    in a row failed. A later migration that rebuilds `accounts` on SQLite must create the triggers again.
    """

    __tablename__ = "proxies"
    __table_args__ = (
        CheckConstraint("max_accounts IS NULL OR max_accounts >= 1", name="max_accounts_positive"),
        Index("ix_proxies_group_name", "group_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url_enc: Mapped[str] = mapped_column(Text)
    url_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    display: Mapped[str] = mapped_column(String(300))
    scheme: Mapped[str] = mapped_column(String(16))
    group_name: Mapped[str] = mapped_column(String(64), default="default")
    max_accounts: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=ProxyState.UNKNOWN.value)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_code: Mapped[str] = mapped_column(String(32), default="", server_default="")
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Admin(Base):
    """An admin of the bot added by an owner (`run_cli.py admins add`), with a role (`common.roles.Role`).
    `ADMIN_IDS` are owners without a row here."""

    __tablename__ = "admins"

    tg_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    added_by: Mapped[str] = mapped_column(String(128), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """One state-changing action: who (`actor`, and the `role` they acted in), what (`action`, a code),
    on what (`targets`: space-separated `kind:id`, with a space at each end so a target matches as a word),
    with which parameters (JSON, secrets masked), how it ended (`outcome`: `ok` or an error code) and when.

    Append-only: migration 0013's trigger refuses any UPDATE; rows older than AUDIT_RETENTION_DAYS are
    deleted by the backend, and nothing else deletes them (`database.audit`).
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_actor_id", "actor", "id"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    actor_name: Mapped[str] = mapped_column(String(64), default="", server_default="")
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48))
    targets: Mapped[str] = mapped_column(Text, default=" ", server_default=" ")
    params: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    outcome: Mapped[str] = mapped_column(String(64), default="ok")
