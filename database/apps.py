"""The pool of API apps (`ApiApp`): adding, listing with their load, removing, and choosing one for an account
— the least loaded of those under their cap — with the claims that logins in progress hold (`ApiAppClaim`).

The cap is the database's (migration 0010's triggers): an account or a claim that would take its app over the
cap is refused whoever writes it, however many write at once. Choosing is therefore optimistic: take the least
loaded app that looks under its cap, write the row, and if the write is refused (`is_cap_refusal`) choose again
in a new transaction — another writer took the last place meanwhile.

Functions take a `Session` and never commit: the caller's unit of work owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from common.validation import MAX_ROW_ID
from database.errors import AppExists, AppFull, AppInUse, AppNotFound, AppNotInPool, AppPoolEmpty, AppPoolExhausted
from database.events import NewEvent, record_events
from database.models import Account, ApiApp, ApiAppClaim, FleetEventKind, utcnow

# How long a login's claim holds its place: longer than a login can last (`backend.onboarding.LOGIN_TTL_SECONDS`).
CLAIM_TTL = timedelta(minutes=10)
# The words a refusal of the triggers starts with (migration 0010).
CAP_REFUSAL = "api_app_cap"


@dataclass(frozen=True)
class AppLoad:
    """An app with what it carries: accounts, and logins in progress that claimed it."""

    app: ApiApp
    accounts: int
    logins: int

    @property
    def used(self) -> int:
        return self.accounts + self.logins

    @property
    def full(self) -> bool:
        return self.app.max_accounts is not None and self.used >= self.app.max_accounts


def app_subject(app_id: int) -> str:
    return f"app:{app_id}"


def is_cap_refusal(error: DBAPIError) -> bool:
    """Whether an integrity error is the triggers refusing a row over its app's cap."""
    return CAP_REFUSAL in str(error.orig)


# --- reads -------------------------------------------------------------------------------------------------


def app_loads(session: Session) -> list[AppLoad]:
    """Every app with its load, by id, in one statement."""
    accounts = (
        select(Account.app_id, func.count().label("n"))
        .where(Account.app_id.is_not(None))
        .group_by(Account.app_id)
        .subquery()
    )
    claims = select(ApiAppClaim.app_id, func.count().label("n")).group_by(ApiAppClaim.app_id).subquery()
    rows = session.execute(
        select(ApiApp, func.coalesce(accounts.c.n, 0), func.coalesce(claims.c.n, 0))
        .outerjoin(accounts, accounts.c.app_id == ApiApp.id)
        .outerjoin(claims, claims.c.app_id == ApiApp.id)
        .order_by(ApiApp.id)
    )
    return [AppLoad(app, int(carried), int(claimed)) for app, carried, claimed in rows]


def get_app(session: Session, app_id: int) -> ApiApp:
    app = session.get(ApiApp, app_id) if 1 <= app_id <= MAX_ROW_ID else None
    if app is None:
        raise AppNotFound(app_id)
    return app


def find_app(session: Session, api_id: int) -> ApiApp | None:
    return session.scalar(select(ApiApp).where(ApiApp.api_id == api_id))


def accounts_on(session: Session, app_id: int) -> int:
    return int(session.scalar(select(func.count(Account.id)).where(Account.app_id == app_id)) or 0)


# --- choosing ----------------------------------------------------------------------------------------------


def least_loaded(session: Session) -> ApiApp:
    """The app carrying the fewest accounts and claims among those under their cap (the older on a tie).

    What it reads may be overtaken by another writer before this transaction writes; the database then refuses
    the row, and the caller chooses again."""
    loads = app_loads(session)
    if not loads:
        raise AppPoolEmpty()
    room = [load for load in loads if not load.full]
    if not room:
        raise AppPoolExhausted(len(loads))
    return min(room, key=lambda load: (load.used, load.app.id)).app


def app_with_room(session: Session, api_id: int, holding: int | None = None) -> ApiApp:
    """The pool's app of this API ID, if it is under its cap — or is `holding`, the app the account has already."""
    app = find_app(session, api_id)
    if app is None:
        raise AppNotInPool(api_id)
    load = next(load for load in app_loads(session) if load.app.id == app.id)
    if load.full and app.id != holding:
        assert app.max_accounts is not None
        raise AppFull(api_id, app.max_accounts)
    return app


def forget_expired_claims(session: Session, now: datetime | None = None) -> None:
    """Give back the places of logins that were abandoned (their claims outlived any login)."""
    session.execute(delete(ApiAppClaim).where(ApiAppClaim.expires_at < (now or utcnow())))


def claim(session: Session, app_id: int, login_id: str) -> None:
    """Hold a place under the app's cap for a login in progress; an IntegrityError if the app is full."""
    session.add(ApiAppClaim(app_id=app_id, login_id=login_id, expires_at=utcnow() + CLAIM_TTL))
    session.flush()


def release(session: Session, login_id: str) -> bool:
    """Drop a login's claim (it ended: its account now holds the place, or it failed); whether it was there."""
    result = session.execute(delete(ApiAppClaim).where(ApiAppClaim.login_id == login_id))
    return bool(getattr(result, "rowcount", 0))


# --- writes ------------------------------------------------------------------------------------------------


def add_app(
    session: Session, api_id: int, api_hash_enc: str, name: str, max_accounts: int | None, actor: str
) -> ApiApp:
    existing = find_app(session, api_id)
    if existing is not None:
        raise AppExists(api_id, existing.id)
    app = ApiApp(api_id=api_id, api_hash_enc=api_hash_enc, name=name, max_accounts=max_accounts)
    session.add(app)
    session.flush()
    record_events(session, [NewEvent(FleetEventKind.APP_ADDED, app_subject(app.id), None, actor)])
    return app


def change_app(
    session: Session, app: ApiApp, name: str | None, max_accounts: int | None, no_cap: bool, actor: str
) -> ApiApp:
    if name is not None:
        app.name = name
    if no_cap or max_accounts is not None:
        app.max_accounts = None if no_cap else max_accounts
    session.flush()
    record_events(session, [NewEvent(FleetEventKind.APP_CHANGED, app_subject(app.id), None, actor)])
    return app


def remove_app(session: Session, app: ApiApp, actor: str) -> None:
    """Delete an app no account uses (the foreign key refuses it otherwise, even if one arrived meanwhile)."""
    carried = accounts_on(session, app.id)
    if carried:
        raise AppInUse(app.id, carried)
    subject = app_subject(app.id)
    session.delete(app)
    session.flush()
    record_events(session, [NewEvent(FleetEventKind.APP_REMOVED, subject, None, actor)])
