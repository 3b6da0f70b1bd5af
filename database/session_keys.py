"""One session, one account: `accounts.session_lookup` is a keyed hash of the session's auth key (made as phone
numbers' are, `SecretBox.lookup`), unique in the database, so a session already in the fleet cannot come in
again as another account — two places at once is how Telegram revokes a key (AUTH_KEY_DUPLICATED).

Accounts stored before migration 0010 have none: `backfill` gives it to them (the accounts service runs it once
per process, before its first import; `rekey` re-hashes every account's).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.crypto import SecretBox, SecretError
from common.sessions import parse_string_session
from common.validation import InvalidValue
from database.models import Account

log = logging.getLogger(__name__)
BATCH = 500


def _identity(session_string: str) -> str:
    """What is hashed: the auth key alone (the data centre's address may change, the key is the session)."""
    return "session:" + parse_string_session(session_string).auth_key.hex()


def session_lookup(box: SecretBox, session_string: str) -> str:
    """The keyed hash of a (valid) StringSession's auth key under the current key."""
    return box.lookup(_identity(session_string))


def session_lookups(box: SecretBox, session_string: str) -> list[str]:
    """Its hashes under every key SECRET_KEY lists (what a search must match while keys rotate)."""
    return box.lookups(_identity(session_string))


def stored_session_lookup(box: SecretBox, session_enc: str) -> str | None:
    """The hash of a stored (encrypted) session, or None if it cannot be read here."""
    try:
        return session_lookup(box, box.decrypt(session_enc))
    except (SecretError, InvalidValue):
        return None


def find_by_session(session: Session, lookups: list[str]) -> Account | None:
    return session.scalar(select(Account).where(Account.session_lookup.in_(lookups)).limit(1))


def is_session_conflict(error: DBAPIError) -> bool:
    """Whether an integrity error is the unique session hash (SQLite names the column, PostgreSQL the index)."""
    return "session_lookup" in str(error.orig)


def backfill(sessions: sessionmaker[Session], box: SecretBox) -> int:
    """Give every account with a session but no hash its hash; how many got one. A session that cannot be read
    is left for later; one that another account has already (stored twice before this check existed) is left
    without, with a warning naming both."""
    filled, last = 0, 0
    while True:
        with sessions() as session:
            rows = session.execute(
                select(Account.id, Account.session_enc)
                .where(Account.session_lookup.is_(None), Account.session_enc.is_not(None), Account.id > last)
                .order_by(Account.id)
                .limit(BATCH)
            ).all()
        if not rows:
            return filled
        last = rows[-1][0]
        hashed = {account_id: stored_session_lookup(box, token) for account_id, token in rows if token}
        try:
            filled += _store(sessions, {account_id: value for account_id, value in hashed.items() if value})
        except IntegrityError:  # another process is filling the same rows: it will finish them
            return filled


def _store(sessions: sessionmaker[Session], hashed: dict[int, str]) -> int:
    stored = 0
    with sessions.begin() as session:
        holders = dict(
            session.execute(
                select(Account.session_lookup, Account.id).where(Account.session_lookup.in_(list(hashed.values())))
            ).all()
        )
        for account_id, value in hashed.items():
            holder = holders.get(value)
            if holder is not None:
                log.warning(
                    "accounts %s and %s hold the same session; only %s is marked as its", holder, account_id, holder
                )
                continue
            holders[value] = account_id
            changed = session.execute(
                update(Account)
                .where(Account.id == account_id, Account.session_lookup.is_(None))
                .values(session_lookup=value)
                .execution_options(synchronize_session=False)
            )
            stored += int(getattr(changed, "rowcount", 0) or 0)
    return stored
