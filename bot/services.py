"""What handlers get as `services`: the fleet and accounts services (and the board's, for its moderation,
the operations', the plugins', the proxy pool's, the admins' and the audit log's), called off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from backend.accounts_service import AccountService
from backend.admins_service import AdminsService
from backend.audit_service import AuditService
from backend.control_plane import ControlPlane
from backend.fleet import FleetService
from backend.operations_service import OperationsService
from backend.plugins_service import PluginsService
from backend.proxies_service import ProxiesService
from backend.session_export import SessionExporter
from backend.worker_logins import WorkerLogins
from board.service import BoardService

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class BotServices:
    fleet: FleetService  # workers, their presence and the event log
    accounts: AccountService
    board: BoardService | None = None  # the anonymous board's moderation and statistics (the Board section)
    operations: OperationsService | None = None  # account operations (check, sessions, 2FA, profile)
    plugins: PluginsService | None = None  # plugins per account
    export: SessionExporter | None = None  # accounts' sessions written out (the card's Export)
    proxies: ProxiesService | None = None  # the pool of proxies (the Proxies page)
    admins: AdminsService | None = None  # who is an admin, in which role (the gate, alerts, the Admins page)
    audit: AuditService | None = None  # the audit log (the Audit page)
    logins: WorkerLogins | None = None  # workers' own Redis logins (issued from a worker's card)
    sandbox: bool = False  # the fleet is the Telegram sandbox's demo: every menu says so

    @classmethod
    def of(
        cls,
        plane: ControlPlane,
        *,
        board: bool = True,
        operations: bool = True,
        plugins: bool = True,
        proxies: bool = True,
    ) -> BotServices:
        """The services of a control plane, built now (handlers call them from several threads)."""
        return cls(
            fleet=plane.fleet,
            accounts=plane.accounts,
            board=plane.board if board else None,
            operations=plane.operations if operations else None,
            plugins=plane.plugins if plugins else None,
            export=plane.exporter,
            proxies=plane.proxies if proxies else None,
            admins=plane.admins,
            audit=plane.audit,
            logins=plane.worker_logins,
        )

    async def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking service call (Redis, the database, Celery) in a thread."""
        return await asyncio.to_thread(function, *args, **kwargs)
