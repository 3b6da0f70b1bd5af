"""The pool of proxies (`Proxy`): adding, listing with their load, removing, pinning accounts to one, and
choosing one from a group — the least loaded of those that can take more.

The cap is the database's (migration 0011's triggers): an account that would take its proxy over the cap is
refused whoever writes it. Choosing is exact as well: a writer first locks the rows of the proxies it may
choose among (`lock_proxies`: an UPDATE, which on PostgreSQL locks those rows until commit and on SQLite takes
the single writer lock), and only then counts their accounts, so two assignments at once are counted one after
the other and the load stays balanced.

Functions take a `Session` and never commit: the caller's unit of work owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from common.crypto import SecretBox, SecretError
from common.details import Detail
from common.errors import FleetError
from common.validation import MAX_ROW_ID
from database.events import NewEvent, account_subject, record_events
from database.models import Account, FleetEventKind, Proxy, ProxyState

# The words a refusal of the triggers starts with (migration 0011).
CAP_REFUSAL = "proxy_cap"
LIVE_STATES = frozenset({ProxyState.ALIVE.value, ProxyState.SLOW.value})


class ProxyError(FleetError):
    """A refusal about the pool of proxies; each kind below has its own code."""


class ProxyNotFound(ProxyError, LookupError):
    def __init__(self, proxy_id: int) -> None:
        super().__init__(f"proxy {proxy_id} not found", "proxy_not_found", id=proxy_id)


class ProxyInUse(ProxyError):
    def __init__(self, proxy_id: int, count: int) -> None:
        super().__init__(
            f"proxy {proxy_id} still carries {count} account(s); give --reassign to move them to another proxy "
            "of its group, or pin them elsewhere first",
            "proxy_in_use",
            id=proxy_id,
            count=count,
        )


class ProxyFull(ProxyError):
    def __init__(self, proxy_id: int, cap: int) -> None:
        super().__init__(
            f"proxy {proxy_id} carries as many accounts as its cap ({cap})", "proxy_full", id=proxy_id, cap=cap
        )


class ProxyDead(ProxyError):
    def __init__(self, proxy_id: int) -> None:
        super().__init__(f"proxy {proxy_id} is dead: choose a live one", "proxy_dead", id=proxy_id)


class NoProxyInGroup(ProxyError):
    def __init__(self, group: str, needed: int) -> None:
        super().__init__(
            f"group {group!r} has no proxy that is not dead and has room for {needed} more account(s)",
            "proxy_group_full",
            group=group,
            count=needed,
        )


@dataclass(frozen=True)
class ProxyLoad:
    """A proxy with the number of accounts pinned to it."""

    proxy: Proxy
    accounts: int

    @property
    def full(self) -> bool:
        return self.proxy.max_accounts is not None and self.accounts >= self.proxy.max_accounts

    @property
    def room(self) -> int | None:
        """How many more accounts it can take (None: no cap)."""
        cap = self.proxy.max_accounts
        return None if cap is None else max(0, cap - self.accounts)


def proxy_subject(proxy_id: int) -> str:
    """The subject a proxy's events are recorded under."""
    return f"proxy:{proxy_id}"


def is_cap_refusal(error: DBAPIError) -> bool:
    """Whether an integrity error is the triggers refusing an account over its proxy's cap."""
    return CAP_REFUSAL in str(error.orig)


# --- reads -------------------------------------------------------------------------------------------------


def proxy_loads(session: Session, ids: Iterable[int] | None = None, group: str | None = None) -> list[ProxyLoad]:
    """Proxies (all, these, or a group's) with their loads, by id, in one statement."""
    counts = (
        select(Account.proxy_id, func.count().label("n"))
        .where(Account.proxy_id.is_not(None))
        .group_by(Account.proxy_id)
        .subquery()
    )
    query = (
        select(Proxy, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.proxy_id == Proxy.id)
        .execution_options(populate_existing=True)  # as the database has them now (read after a lock)
    )
    if ids is not None:
        query = query.where(Proxy.id.in_(list(ids)))
    if group is not None:
        query = query.where(Proxy.group_name == group)
    return [ProxyLoad(proxy, int(n)) for proxy, n in session.execute(query.order_by(Proxy.id))]


def get_proxy(session: Session, proxy_id: int) -> Proxy:
    proxy = session.get(Proxy, proxy_id) if 1 <= proxy_id <= MAX_ROW_ID else None
    if proxy is None:
        raise ProxyNotFound(proxy_id)
    return proxy


def find_proxy(session: Session, lookups: list[str]) -> Proxy | None:
    """The proxy whose URL has one of these keyed hashes (`SecretBox.lookups`: any key while keys rotate)."""
    return session.scalar(select(Proxy).where(Proxy.url_lookup.in_(lookups)).limit(1))


def accounts_on(session: Session, proxy_id: int) -> Sequence[Account]:
    return session.scalars(select(Account).where(Account.proxy_id == proxy_id).order_by(Account.id)).all()


def groups(session: Session) -> list[str]:
    return list(session.scalars(select(Proxy.group_name).distinct().order_by(Proxy.group_name)))


# --- choosing ----------------------------------------------------------------------------------------------


def lock_proxies(session: Session, ids: Iterable[int] | None = None, group: str | None = None) -> list[ProxyLoad]:
    """Lock these proxies' rows (or a group's) for this transaction, then read their loads: what is read stays
    true until commit, as every writer that pins accounts takes the same locks first (in id order)."""
    statement = update(Proxy).values(failures=Proxy.failures)
    if ids is not None:
        statement = statement.where(Proxy.id.in_(sorted(set(ids))))
    if group is not None:
        statement = statement.where(Proxy.group_name == group)
    if ids is None and group is None:
        raise ValueError("lock which proxies?")
    session.execute(statement, execution_options={"synchronize_session": False})
    return proxy_loads(session, ids, group)


def choose(loads: list[ProxyLoad], *, live_only: bool, exclude: int | None = None) -> ProxyLoad | None:
    """The least loaded proxy that can take one more account: not dead (`live_only`: known alive or slow),
    not full, not `exclude`; a slow one only when no healthy one has room."""
    usable = [
        load
        for load in loads
        if load.proxy.id != exclude
        and not load.full
        and (load.proxy.state in LIVE_STATES if live_only else load.proxy.state != ProxyState.DEAD.value)
    ]
    if not usable:
        return None
    return min(usable, key=lambda load: (load.proxy.state == ProxyState.SLOW.value, load.accounts, load.proxy.id))


def taken(loads: list[ProxyLoad], proxy_id: int, count: int = 1) -> list[ProxyLoad]:
    """The loads after `count` more accounts were pinned to `proxy_id` (choosing again in the same transaction)."""
    return [ProxyLoad(load.proxy, load.accounts + count) if load.proxy.id == proxy_id else load for load in loads]


# --- writes ------------------------------------------------------------------------------------------------


def add_proxy(session: Session, proxy: Proxy, said: Detail, actor: str) -> Proxy:
    session.add(proxy)
    session.flush()
    record_events(session, [NewEvent(FleetEventKind.PROXY_ADDED, proxy_subject(proxy.id), said, actor)])
    return proxy


def pin(session: Session, account: Account, proxy: Proxy | None, said: Detail, actor: str) -> None:
    """Pin the account to `proxy` (None: no proxy): the worker is given the proxy's URL as the account's own
    (the same encrypted token), and the change is an event of the account."""
    account.proxy_id = proxy.id if proxy is not None else None
    account.proxy_enc = proxy.url_enc if proxy is not None else None
    record_events(session, [NewEvent(FleetEventKind.ACCOUNT_PROXY, account_subject(account.id), said, actor)])


def remove_proxy(session: Session, proxy: Proxy, said: Detail, actor: str) -> None:
    subject = proxy_subject(proxy.id)
    session.delete(proxy)
    session.flush()
    record_events(session, [NewEvent(FleetEventKind.PROXY_REMOVED, subject, said, actor)])


def rekey_proxies(session: Session, box: SecretBox) -> list[str]:
    """Re-encrypt every proxy's URL and re-hash it under SECRET_KEY's first key (`run_cli.py rekey`); returns
    the proxies no listed key can decrypt (left as they are). Accounts' copies are re-encrypted with them."""
    failed = []
    for proxy in session.scalars(select(Proxy).order_by(Proxy.id)):
        try:
            url = box.decrypt(proxy.url_enc)
            proxy.url_enc = box.rotate(proxy.url_enc)
            proxy.url_lookup = box.lookup(url)
        except SecretError:
            failed.append(f"proxy {proxy.id}")
    return failed
