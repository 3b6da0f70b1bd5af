"""The bot's admins and their roles: owners by `ADMIN_IDS`, the others added by owners (`database.admins`).

Who holds a role is read here for the bot's gate (`role_of`, `directory`), alerts (`recipients`) and the CLI's
`admins` commands; adding, changing and removing are audited. An owner named by `ADMIN_IDS` is changed only
there: the table cannot demote or remove them (nor add them twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import FleetError
from common.roles import Capability, Role, can, parse_role
from common.validation import printable
from database import admins as store
from database.audit import audited
from database.models import Admin

MAX_NAME = 64
MAX_TG_ID = 2**53  # Telegram user ids fit in 52 bits


class AdminError(FleetError):
    """A refused admins change: `code` says which (admin_not_found, admin_exists, admin_from_env, …)."""


@dataclass(frozen=True)
class AdminView:
    tg_id: int
    role: Role
    name: str
    from_env: bool  # an owner by ADMIN_IDS
    added_by: str
    added_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "tg_id": self.tg_id,
            "role": self.role.value,
            "name": self.name,
            "source": "ADMIN_IDS" if self.from_env else "admins",
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat() if self.added_at else None,
        }


def validate_tg_id(value: object) -> int:
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < MAX_TG_ID:
        raise AdminError(f"'{printable(text)[:40]}' is not a Telegram user id (a positive number)", "invalid_tg_id")
    return int(text)


def validate_role(value: str | Role) -> Role:
    try:
        return parse_role(str(value))
    except ValueError as error:
        raise AdminError(str(error), "invalid_role", role=printable(str(value))[:40]) from None


def validate_name(value: str) -> str:
    name = " ".join(printable(value or "").split())
    return name[:MAX_NAME]


def _admin_target(arguments: dict[str, object], _result: object) -> list[str]:
    return [f"admin:{arguments['tg_id']}"]


class AdminsService:
    def __init__(self, sessions: sessionmaker[Session], owner_ids: frozenset[int] = frozenset()) -> None:
        self.sessions = sessions
        self.owner_ids = owner_ids

    # ---- reads ------------------------------------------------------------------------------------------

    def list_admins(self) -> list[AdminView]:
        with self.sessions() as session:
            rows = {row.tg_id: row for row in store.all_admins(session)}
        views = [AdminView(tg_id, Role.OWNER, "", True, "ADMIN_IDS", None) for tg_id in sorted(self.owner_ids)]
        views += [self._view(row) for tg_id, row in sorted(rows.items()) if tg_id not in self.owner_ids]
        return views

    def directory(self) -> dict[int, Role]:
        """Every admin's role (one query): the bot's gate keeps a copy and refreshes it."""
        with self.sessions() as session:
            roles = {row.tg_id: _role(row.role) for row in store.all_admins(session)}
        found = {tg_id: role for tg_id, role in roles.items() if role is not None}
        return found | dict.fromkeys(self.owner_ids, Role.OWNER)

    def role_of(self, tg_id: int) -> Role | None:
        if tg_id in self.owner_ids:
            return Role.OWNER
        with self.sessions() as session:
            row = store.find_admin(session, tg_id)
            return _role(row.role) if row is not None else None

    def get(self, tg_id: int) -> AdminView:
        tg_id = validate_tg_id(tg_id)
        if tg_id in self.owner_ids:
            return AdminView(tg_id, Role.OWNER, "", True, "ADMIN_IDS", None)
        with self.sessions() as session:
            row = store.find_admin(session, tg_id)
            if row is None:
                raise AdminError(f"{tg_id} is not an admin", "admin_not_found", tg_id=tg_id)
            return self._view(row)

    def recipients(self, capability: Capability) -> list[int]:
        """The admins whose role holds `capability` (alerts go to those who can act on them)."""
        return sorted(tg_id for tg_id, role in self.directory().items() if can(role, capability))

    # ---- changes (audited) ------------------------------------------------------------------------------

    @audited("admin.add", _admin_target, params=("role", "name"))
    def add(self, tg_id: int, role: str | Role, name: str, actor: str) -> AdminView:
        tg_id, chosen, name = validate_tg_id(tg_id), validate_role(role), validate_name(name)
        self._refuse_env_owner(tg_id)
        try:
            with self.sessions.begin() as session:
                if store.find_admin(session, tg_id) is not None:
                    raise AdminError(f"{tg_id} is an admin already", "admin_exists", tg_id=tg_id)
                return self._view(store.put_admin(session, tg_id, chosen.value, name, actor))
        except IntegrityError:  # added at the same moment by someone else (the primary key held)
            raise AdminError(f"{tg_id} is an admin already", "admin_exists", tg_id=tg_id) from None

    @audited("admin.set_role", _admin_target, params=("role",))
    def set_role(self, tg_id: int, role: str | Role, actor: str) -> AdminView:
        tg_id, chosen = validate_tg_id(tg_id), validate_role(role)
        self._refuse_env_owner(tg_id)
        with self.sessions.begin() as session:
            row = store.find_admin(session, tg_id)
            if row is None:
                raise AdminError(f"{tg_id} is not an admin", "admin_not_found", tg_id=tg_id)
            row.role = chosen.value
            session.flush()
            return self._view(row)

    @audited("admin.remove", _admin_target)
    def remove(self, tg_id: int, actor: str) -> None:
        tg_id = validate_tg_id(tg_id)
        self._refuse_env_owner(tg_id)
        with self.sessions.begin() as session:
            if not store.delete_admin(session, tg_id):
                raise AdminError(f"{tg_id} is not an admin", "admin_not_found", tg_id=tg_id)

    def _refuse_env_owner(self, tg_id: int) -> None:
        if tg_id in self.owner_ids:
            raise AdminError(
                f"{tg_id} is an owner by ADMIN_IDS: change that setting to change them", "admin_from_env", tg_id=tg_id
            )

    @staticmethod
    def _view(row: Admin) -> AdminView:
        return AdminView(row.tg_id, _role(row.role) or Role.VIEWER, row.name, False, row.added_by, row.added_at)


def _role(text: str) -> Role | None:
    try:
        return Role(text)
    except ValueError:
        return None
