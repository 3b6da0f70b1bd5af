"""The pool of API apps as operators manage it: add one (its hash validated and encrypted at once), list them
with the accounts each carries, rename one or change its cap, remove one no account uses. Views never hold the
hash, not even encrypted.

Which app a login or an import gets is the accounts service's (`backend.app_choice`), over `database.apps`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.fleet import InvalidInput, iso_utc
from common.crypto import SecretBox
from common.validation import InvalidValue, has_unsafe_characters, validate_api_hash, validate_api_id
from database import apps as apps_db
from database.audit import audited, named
from database.errors import AppExists, AppInUse
from database.models import ApiApp

NAME_MAX = 64
MAX_ACCOUNTS_LIMIT = 1_000_000


@dataclass(frozen=True)
class AppView:
    id: int
    api_id: int
    name: str
    accounts: int  # accounts it carries
    logins: int  # logins in progress that hold a place under its cap
    max_accounts: int | None  # None: no cap
    created_at: datetime | None

    @property
    def full(self) -> bool:
        return self.max_accounts is not None and self.accounts + self.logins >= self.max_accounts

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "api_id": self.api_id,
            "name": self.name,
            "accounts": self.accounts,
            "logins": self.logins,
            "max_accounts": self.max_accounts,
            "full": self.full,
            "created_at": iso_utc(self.created_at),
        }


def _view(app: ApiApp, accounts: int = 0, logins: int = 0) -> AppView:
    return AppView(app.id, app.api_id, app.name, accounts, logins, app.max_accounts, app.created_at)


def _name(raw: str | None) -> str:
    name = (raw or "").strip()
    if len(name) > NAME_MAX or has_unsafe_characters(name):
        raise InvalidInput(f"an app's name is at most {NAME_MAX} printable characters")
    return name


def _cap(raw: int | None) -> int | None:
    if raw is not None and not 1 <= raw <= MAX_ACCOUNTS_LIMIT:
        raise InvalidInput(f"--max-accounts is a whole number from 1 to {MAX_ACCOUNTS_LIMIT}")
    return raw


class AppsService:
    def __init__(self, sessions: sessionmaker[Session], box: Callable[[], SecretBox]) -> None:
        self.sessions = sessions
        self._box = box

    @audited("app.add", lambda _a, app: [f"app:{app.id}"] if app else [], params=("api_id", "name", "max_accounts"))
    def add(
        self, api_id: object, api_hash: str, *, name: str | None = None, max_accounts: int | None = None, actor: str
    ) -> AppView:
        try:
            checked_id, checked_hash = validate_api_id(api_id), validate_api_hash(api_hash)
        except InvalidValue as error:
            raise InvalidInput(str(error), error.code) from None
        checked_name, cap = _name(name), _cap(max_accounts)
        hash_enc = self._box().encrypt(checked_hash)
        try:
            with self.sessions.begin() as session:
                app = apps_db.add_app(session, checked_id, hash_enc, checked_name, cap, actor)
                return _view(app)
        except IntegrityError:  # added meanwhile by someone else
            with self.sessions() as session:
                existing = apps_db.find_app(session, checked_id)
            if existing is None:
                raise
            raise AppExists(checked_id, existing.id) from None

    @audited("app.change", named(("app", "app_id")), params=("name", "max_accounts", "no_cap"))
    def change(
        self, app_id: int, *, name: str | None = None, max_accounts: int | None = None, no_cap: bool = False, actor: str
    ) -> AppView:
        """Rename an app or change its cap (`no_cap`: none). A cap below what the app carries takes nothing
        away: the app is full until it is under it again."""
        checked_name, cap = (None if name is None else _name(name)), _cap(max_accounts)
        with self.sessions.begin() as session:
            app = apps_db.change_app(session, apps_db.get_app(session, app_id), checked_name, cap, no_cap, actor)
            load = next(load for load in apps_db.app_loads(session) if load.app.id == app.id)
            return _view(app, load.accounts, load.logins)

    def list(self) -> list[AppView]:
        with self.sessions() as session:
            return [_view(load.app, load.accounts, load.logins) for load in apps_db.app_loads(session)]

    @audited("app.remove", named(("app", "app_id")))
    def remove(self, app_id: int, actor: str) -> AppView:
        try:
            with self.sessions.begin() as session:
                app = apps_db.get_app(session, app_id)
                view = _view(app)
                apps_db.remove_app(session, app, actor)
            return view
        except IntegrityError:  # an account took it meanwhile: the foreign key kept the app
            with self.sessions() as session:
                raise AppInUse(app_id, apps_db.accounts_on(session, app_id)) from None
