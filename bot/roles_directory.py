"""Who is an admin of the bot and in which role, as the gate reads it on every update: a copy of the admins table
(`AdminsService.directory`, with ADMIN_IDS as owners) kept in memory, read again every REFRESH_SECONDS and at
once after the bot changes an admin. An admin removed elsewhere (the CLI) is a stranger within that period.
If the database cannot be read, the last copy stands (and ADMIN_IDS are owners whatever happens).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from backend.admins_service import AdminsService
from common.roles import Role

log = logging.getLogger(__name__)
REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class Directory:
    roles: Mapping[int, Role] = field(default_factory=dict)
    names: Mapping[int, str] = field(default_factory=dict)  # the names owners gave in the admins table


Loader = Callable[[], Directory]


def loader_of(admins: AdminsService) -> Loader:
    def load() -> Directory:
        roles = admins.directory()
        names = {view.tg_id: view.name for view in admins.list_admins() if view.name and view.tg_id in roles}
        return Directory(roles, names)

    return load


class RolesDirectory:
    def __init__(
        self,
        owner_ids: frozenset[int],
        load: Loader | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner_ids = owner_ids
        self.load = load
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._current = Directory(dict.fromkeys(owner_ids, Role.OWNER))
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, admins: AdminsService | None, owner_ids: frozenset[int], **options: float) -> RolesDirectory:
        return cls(owner_ids, loader_of(admins) if admins is not None else None, **options)

    def invalidate(self) -> None:
        """Read the table again before the next answer (the bot has just changed an admin)."""
        self._read_at = None

    def _stale(self) -> bool:
        return self._read_at is None or self.clock() - self._read_at >= self.refresh_seconds

    async def refresh(self, force: bool = False) -> None:
        if self.load is None:
            return
        async with self._lock:
            if not force and not self._stale():
                return  # another update read it meanwhile
            try:
                found = await asyncio.to_thread(self.load)
            except Exception as error:  # noqa: BLE001 - the gate keeps its last copy rather than fail
                log.warning("admins: could not read the admins table (%s); keeping the last copy", error)
                self._read_at = self.clock()
                return
            roles = dict(found.roles) | dict.fromkeys(self.owner_ids, Role.OWNER)
            self._current = Directory(roles, dict(found.names))
            self._read_at = self.clock()

    async def role_of(self, user_id: int) -> Role | None:
        if self._stale():
            await self.refresh()
        return self._current.roles.get(user_id)

    def cached_role(self, user_id: int) -> Role | None:
        """The role as last read (for what must not wait on the database)."""
        return self._current.roles.get(user_id)

    def name_of(self, user_id: int) -> str:
        return self._current.names.get(user_id, "")
