"""The one place the control plane's services are built: the admin bot, the CLI, the backend, the tests and the
benchmarks all take them from a `ControlPlane`.

It holds one Redis client and one database for a process and builds each service on first use, so a command
that lists workers neither opens what it does not need nor asks for SECRET_KEY (`box` is the first thing that
does). A process that uses services from several threads (the bot) takes them all at start (`BotServices.of`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from backend.connections import ServiceUnavailable, connect_database, connect_redis

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from backend.accounts_service import AccountService
    from backend.admins_service import AdminsService
    from backend.apps_service import AppsService
    from backend.audit_service import AuditService
    from backend.dispatch import TaskDispatcher
    from backend.fleet import FleetService
    from backend.key_rotation import KeyRotation
    from backend.operations_service import OperationsService
    from backend.plugins_service import PluginsService
    from backend.proxies_service import ProxiesService
    from backend.sealing import Sealer
    from backend.session_export import SessionExporter
    from backend.worker_logins import WorkerLogins
    from board.service import BoardService
    from common.crypto import SecretBox
    from config import BoardLimits


class ControlPlane:
    def __init__(
        self,
        redis_url: str,
        database_url: str,
        offline_after: float,
        *,
        secret_key: Callable[[], str] | None = None,
        plugins_dir: Callable[[], str | None] | None = None,
        board_limits: Callable[[], BoardLimits] | None = None,
        owner_ids: Callable[[], frozenset[int]] | None = None,
        check_redis: bool = True,
    ) -> None:
        """`secret_key`, `plugins_dir` and `board_limits` are read when a service first needs them (each may
        raise `ConfigError`); `owner_ids` gives ADMIN_IDS (the bot's owners); `check_redis` pings Redis on
        connecting (a ServiceUnavailable if it cannot)."""
        self.redis_url = redis_url
        self.database_url = database_url
        self.offline_after = offline_after
        self._secret_key = secret_key
        self._plugins_dir = plugins_dir or (lambda: None)
        self._board_limits = board_limits
        self._owner_ids = owner_ids or frozenset
        self._check_redis = check_redis
        self._building = threading.RLock()

    # ---- connections ------------------------------------------------------------------------------------

    @cached_property
    def redis(self) -> Redis:
        with self._building:
            return connect_redis(self.redis_url, check=self._check_redis)

    @cached_property
    def _database(self) -> tuple[Engine, sessionmaker[Session]]:
        with self._building:
            return connect_database(self.database_url)

    @property
    def engine(self) -> Engine:
        return self._database[0]

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._database[1]

    @cached_property
    def box(self) -> SecretBox:
        """SECRET_KEY's box: asked for only by what handles a secret."""
        from common.crypto import SecretBox

        if self._secret_key is None:
            raise RuntimeError("this process was not given SECRET_KEY")
        return SecretBox(self._secret_key())

    @cached_property
    def sealer(self) -> Sealer | None:
        """What seals secrets to the worker they go to (`backend.sealing`); None in a process without SECRET_KEY
        (payloads then carry SECRET_KEY's tokens, which only workers holding SECRET_KEY read)."""
        from redis.exceptions import RedisError

        from backend.sealing import Sealer, WorkerKeys
        from config import ConfigError

        if self._secret_key is None:
            return None
        try:
            secret_key = self._secret_key()
        except ConfigError:
            return None
        sealer = Sealer(self.box, secret_key, WorkerKeys(self.sessions))
        try:
            sealer.publish(self.redis)  # the backend publishes it again every scan
        except (RedisError, ServiceUnavailable):
            pass
        return sealer

    @cached_property
    def dispatcher(self) -> TaskDispatcher:
        from backend.dispatch import TaskDispatcher

        return TaskDispatcher(self.redis_url, self.sealer)

    # ---- services ---------------------------------------------------------------------------------------

    @cached_property
    def key_rotation(self) -> KeyRotation:
        from backend.key_rotation import KeyRotation

        return KeyRotation(self.redis, self.sessions, self.dispatcher, self.offline_after)

    @cached_property
    def fleet(self) -> FleetService:
        from backend.fleet import FleetService
        from database.accounts import account_counts

        return FleetService(self.redis, self.sessions, self.offline_after, account_counts, self.worker_logins)

    @cached_property
    def worker_logins(self) -> WorkerLogins:
        """Workers' own Redis logins, issued on this control plane's Redis (every data node with Sentinel)."""
        from backend.worker_logins import WorkerLogins

        return WorkerLogins(self.redis, self.redis_url, self.sessions)

    @cached_property
    def accounts(self) -> AccountService:
        from backend.accounts_service import AccountService

        return AccountService(self.redis, self.sessions, self.dispatcher, self.offline_after, lambda: self.box)

    @cached_property
    def apps(self) -> AppsService:
        from backend.apps_service import AppsService

        return AppsService(self.sessions, lambda: self.box)

    @cached_property
    def exporter(self) -> SessionExporter:
        from backend.session_export import SessionExporter

        return SessionExporter(self.sessions, lambda: self.box)

    @cached_property
    def operations(self) -> OperationsService:
        from backend.operations_service import OperationsService

        return OperationsService.over(self.accounts)

    @cached_property
    def plugins(self) -> PluginsService:
        from backend.plugins_service import PluginsService

        return PluginsService(self.redis, self.sessions, self._plugins_dir(), box=lambda: self.box)

    @cached_property
    def proxies(self) -> ProxiesService:
        from backend.proxies_service import ProxiesService
        from config import load_proxy_policy

        service = ProxiesService(self.redis, self.sessions, self.dispatcher, self.offline_after, lambda: self.box)
        service.policy_loader = load_proxy_policy
        return service

    @cached_property
    def admins(self) -> AdminsService:
        from backend.admins_service import AdminsService

        return AdminsService(self.sessions, self._owner_ids())

    @cached_property
    def audit(self) -> AuditService:
        from backend.audit_service import AuditService

        return AuditService(self.sessions)

    @cached_property
    def board(self) -> BoardService:
        from board.service import BoardService
        from config import BoardLimits

        limits = self._board_limits() if self._board_limits is not None else BoardLimits()
        return BoardService(self.sessions, self.box, limits)

    def close(self) -> None:
        if "_database" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
