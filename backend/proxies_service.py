"""The proxies service: the pool (add, list, check, remove) and pinning accounts to its proxies (`set_proxy`).

A proxy's URL carries its credentials: it is encrypted under SECRET_KEY (`Proxy.url_enc`) and found again by a
keyed hash (`url_lookup`), never shown — views carry `display`, scheme://host:port with the user masked. An
account pinned to a proxy gets the same encrypted URL as its own (`Account.proxy_enc`), which is what the
worker is sent, so the wire contract and the workers need nothing else.

Pins are sticky: pinning to a group keeps an account that is on a proxy of that group that is not dead; the
backend moves an account only when its proxy is dead (`backend.proxy_health`). Every change of pins locks
the proxies it chooses among first (`database.proxies.lock_proxies`), so caps and balance hold under any
number of parallel requests; the database's triggers refuse anything over a cap besides. Running accounts
whose pin changed are restarted onto the new proxy (`backend.proxy_pins`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backend.account_base import AccountServiceBase
from backend.fleet import EventView, InvalidInput, iso_utc
from backend.proxy_health import judge
from backend.proxy_pins import Repinned, follow_pins
from celery_app import presence, proxy_health
from celery_app.contract import CheckProxies, ProxyCheckResults, ProxyTarget, TaskName
from common.details import Detail, detail
from common.validation import InvalidValue, ProxySpec, parse_proxy
from config import ProxyPolicy
from database import proxies as proxies_db
from database.accounts import get_account
from database.audit import audited, named, plus_results
from database.events import recent_events
from database.models import Account, Proxy, Worker
from database.proxies import NoProxyInGroup, ProxyDead, ProxyError, ProxyFull, ProxyInUse

GROUP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_GROUP = "default"
CHECK_TIMEOUT = 40.0  # a worker checks side by side, each check under 10 s


def display_of(spec: ProxySpec) -> str:
    """scheme://host:port with the user masked to its first character (an MTProxy's secret not at all)."""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    if spec.kind == "mtproxy":
        return f"mtproxy://***@{host}:{spec.port}"
    user = f"{spec.username[:1]}***@" if spec.username else ""
    return f"{spec.kind}://{user}{host}:{spec.port}"


def checked_group(group: str) -> str:
    text = str(group).strip()
    if not GROUP_PATTERN.fullmatch(text):
        raise InvalidInput(f"invalid proxy group {text!r}: 1-64 letters, digits, '.', '_' or '-'", "proxy_group")
    return text


@dataclass(frozen=True)
class ProxyView:
    id: int
    display: str
    scheme: str
    group: str
    accounts: int
    max_accounts: int | None
    state: str
    latency_ms: float | None
    checked_at: datetime | None
    error: str
    failures: int

    @classmethod
    def of(cls, load: proxies_db.ProxyLoad) -> ProxyView:
        proxy = load.proxy
        return cls(
            proxy.id,
            proxy.display,
            proxy.scheme,
            proxy.group_name,
            load.accounts,
            proxy.max_accounts,
            proxy.state,
            proxy.latency_ms,
            proxy.checked_at,
            proxy.error_code,
            proxy.failures,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "proxy": self.display,
            "scheme": self.scheme,
            "group": self.group,
            "accounts": self.accounts,
            "max_accounts": self.max_accounts,
            "state": self.state,
            "latency_ms": self.latency_ms,
            "checked_at": iso_utc(self.checked_at),
            "error": self.error,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class Added:
    id: int
    display: str
    added: bool  # False: the pool had it already (nothing changed)


@dataclass(frozen=True)
class Pinned:
    account_id: int
    before: str | None  # the proxy shown as before ("#2 socks5://…"), None for none
    after: str | None
    changed: bool
    restarted: bool = False


_ASKED = named(("proxy", "proxy_ids"))


@dataclass(frozen=True)
class CheckView:
    id: int
    display: str
    worker: str
    ok: bool
    latency_ms: float | None
    error: str
    failures: int
    state: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "proxy": self.display,
            "worker": self.worker,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "failures": self.failures,
            "state": self.state,
        }


def _shown(proxy: Proxy | None) -> str | None:
    return f"#{proxy.id} {proxy.display}" if proxy is not None else None


class ProxiesService(AccountServiceBase):
    """Every proxy action of the control plane (see the module's docstring)."""

    policy_loader: Callable[[], ProxyPolicy] = ProxyPolicy

    @property
    def policy(self) -> ProxyPolicy:
        return self.policy_loader()

    # --- the pool

    @audited("proxy.add", lambda _a, added: [f"proxy:{p.id}" for p in added or []], params=("group", "max_accounts"))
    def add(self, urls: list[str], group: str, max_accounts: int | None, actor: str) -> list[Added]:
        """Add proxies to a group (all or none: one URL that is not a proxy refuses the lot); one the pool
        holds already is left as it is."""
        group = checked_group(group)
        specs: list[ProxySpec] = []
        for url in urls:
            try:
                specs.append(parse_proxy(url))
            except InvalidValue as error:
                raise InvalidInput(str(error), "proxy") from None
        box = self.box
        results: list[Added] = []
        with self.sessions.begin() as session:
            for spec in specs:
                canonical = spec.url()
                existing = proxies_db.find_proxy(session, box.lookups(canonical))
                if existing is not None:
                    results.append(Added(existing.id, existing.display, False))
                    continue
                shown = display_of(spec)
                proxy = Proxy(
                    url_enc=box.encrypt(canonical),
                    url_lookup=box.lookup(canonical),
                    display=shown,
                    scheme=spec.kind,
                    group_name=group,
                    max_accounts=max_accounts,
                )
                proxies_db.add_proxy(session, proxy, detail("proxy_added", proxy=shown, group=group), actor)
                results.append(Added(proxy.id, shown, True))
        return results

    def list_proxies(self, group: str | None = None) -> list[ProxyView]:
        with self.sessions() as session:
            return [ProxyView.of(load) for load in proxies_db.proxy_loads(session, group=group)]

    def get_proxy(self, proxy_id: int, event_limit: int = 10) -> tuple[ProxyView, list[EventView]]:
        """A proxy and its latest events (added, dead, back, no spare), newest first."""
        with self.sessions() as session:
            loads = proxies_db.proxy_loads(session, [proxies_db.get_proxy(session, proxy_id).id])
            subject = proxies_db.proxy_subject(proxy_id)
            events = [EventView.of(event) for event in recent_events(session, subject, event_limit)]
        return ProxyView.of(loads[0]), events

    @audited("proxy.remove", plus_results(named(("proxy", "proxy_id")), "account", "account_id"), ("reassign",))
    def remove(self, proxy_id: int, reassign: bool, actor: str) -> list[Pinned]:
        """Remove a proxy; one that accounts use only with `reassign`: they move to other proxies of its group
        (not dead, under their caps; all or none), and those running restart onto them."""
        with self.sessions.begin() as session:
            group = proxies_db.get_proxy(session, proxy_id).group_name
            loads = proxies_db.lock_proxies(session, group=group)
            proxy = proxies_db.get_proxy(session, proxy_id)
            accounts = list(proxies_db.accounts_on(session, proxy_id))
            if accounts and not reassign:
                raise ProxyInUse(proxy_id, len(accounts))
            changed, pinned = self._pin_from_loads(session, accounts, loads, proxy, actor, exclude=proxy_id)
            session.flush()
            proxies_db.remove_proxy(session, proxy, detail("proxy_removed", proxy=proxy.display), actor)
        proxy_health.forget_proxy(self.redis, proxy_id)
        return self._follow(changed, pinned)

    def _pin_from_loads(
        self,
        session: Session,
        accounts: list[Account],
        loads: list[proxies_db.ProxyLoad],
        removed: Proxy,
        actor: str,
        exclude: int,
    ) -> tuple[list[Repinned], list[Pinned]]:
        changed: list[Repinned] = []
        pinned: list[Pinned] = []
        for account in accounts:
            target = proxies_db.choose(loads, live_only=False, exclude=exclude)
            if target is None:
                raise NoProxyInGroup(removed.group_name, len(accounts) - len(pinned))
            said = detail(
                "proxy_reassigned",
                removed=removed.id,
                removed_proxy=removed.display,
                to=target.proxy.id,
                to_proxy=target.proxy.display,
            )
            proxies_db.pin(session, account, target.proxy, said, actor)
            loads = proxies_db.taken(loads, target.proxy.id)
            changed.append(Repinned(account, self._worker_of(session, account)))
            pinned.append(Pinned(account.id, _shown(removed), _shown(target.proxy), True))
        return changed, pinned

    # --- pinning accounts

    @audited(
        "account.set_proxy",
        named(("account", "account_ids"), ("proxy", "proxy_id")),
        params=("proxy_id", "group", "none"),
    )
    def set_proxy(
        self,
        account_ids: list[int],
        actor: str,
        proxy_id: int | None = None,
        group: str | None = None,
        none: bool = False,
    ) -> list[Pinned]:
        """Pin accounts to one proxy, to the least loaded of a group (sticky: an account on a proxy of the group
        that is not dead stays), or to none. All or nothing: a cap or a group without room refuses the lot."""
        if [proxy_id is not None, group is not None, none].count(True) != 1:
            raise ValueError("give exactly one of proxy_id, group, none")
        group = checked_group(group) if group is not None else None
        try:
            with self.sessions.begin() as session:
                if none:
                    changed, pinned = self._unpin(session, account_ids, actor)
                elif proxy_id is not None:
                    changed, pinned = self._pin_one(session, account_ids, proxy_id, actor)
                else:
                    assert group is not None
                    changed, pinned = self._pin_group(session, account_ids, group, actor)
        except DBAPIError as error:
            if proxies_db.is_cap_refusal(error):  # the triggers: never reached while the locks are taken
                raise ProxyError(
                    "a proxy is at its cap (refused by the database)", "proxy_full", id=proxy_id or 0, cap=0
                ) from None
            raise
        return self._follow(changed, pinned)

    def _accounts(self, session: Session, account_ids: list[int]) -> list[Account]:
        return [get_account(session, account_id) for account_id in dict.fromkeys(account_ids)]

    def _unpin(self, session: Session, account_ids: list[int], actor: str) -> tuple[list[Repinned], list[Pinned]]:
        changed: list[Repinned] = []
        pinned: list[Pinned] = []
        for account in self._accounts(session, account_ids):
            before = session.get(Proxy, account.proxy_id) if account.proxy_id is not None else None
            if account.proxy_id is None and account.proxy_enc is None:
                pinned.append(Pinned(account.id, None, None, False))
                continue
            old = _shown(before) or "own"
            proxies_db.pin(session, account, None, detail("proxy_set", old=old, new=detail("proxy_none")), actor)
            changed.append(Repinned(account, self._worker_of(session, account)))
            pinned.append(Pinned(account.id, old, None, True))
        return changed, pinned

    def _pin_one(
        self, session: Session, account_ids: list[int], proxy_id: int, actor: str
    ) -> tuple[list[Repinned], list[Pinned]]:
        loads = proxies_db.lock_proxies(session, ids=[proxy_id])  # first: what follows is read under the lock
        if not loads:
            raise proxies_db.ProxyNotFound(proxy_id)
        load = loads[0]
        if load.proxy.state == "dead":
            raise ProxyDead(proxy_id)
        accounts = self._accounts(session, account_ids)
        moving = [account for account in accounts if account.proxy_id != proxy_id]
        if load.room is not None and len(moving) > load.room:
            assert load.proxy.max_accounts is not None
            raise ProxyFull(proxy_id, load.proxy.max_accounts)
        changed: list[Repinned] = []
        pinned: list[Pinned] = []
        for account in accounts:
            before = session.get(Proxy, account.proxy_id) if account.proxy_id is not None else None
            if account in moving:
                self._repin(session, account, before, load.proxy, actor, changed)
            pinned.append(Pinned(account.id, _shown(before), _shown(load.proxy), account in moving))
        return changed, pinned

    def _pin_group(
        self, session: Session, account_ids: list[int], group: str, actor: str
    ) -> tuple[list[Repinned], list[Pinned]]:
        loads = proxies_db.lock_proxies(session, group=group)  # first: what follows is read under the lock
        in_group = {load.proxy.id: load.proxy for load in loads}
        accounts = self._accounts(session, account_ids)
        changed: list[Repinned] = []
        pinned: list[Pinned] = []
        for index, account in enumerate(accounts):
            current = in_group.get(account.proxy_id or 0)
            if current is not None and current.state != "dead":
                pinned.append(Pinned(account.id, _shown(current), _shown(current), False))  # sticky
                continue
            target = proxies_db.choose(loads, live_only=False)
            if target is None:
                raise NoProxyInGroup(group, len(accounts) - index)
            before = current or (session.get(Proxy, account.proxy_id) if account.proxy_id is not None else None)
            self._repin(session, account, before, target.proxy, actor, changed)
            loads = proxies_db.taken(loads, target.proxy.id)
            pinned.append(Pinned(account.id, _shown(before), _shown(target.proxy), True))
        return changed, pinned

    def _repin(
        self,
        session: Session,
        account: Account,
        before: Proxy | None,
        after: Proxy,
        actor: str,
        changed: list[Repinned],
    ) -> None:
        old: str | Detail = _shown(before) or ("own" if account.proxy_enc else detail("proxy_none"))
        proxies_db.pin(session, account, after, detail("proxy_set", old=old, new=_shown(after) or ""), actor)
        changed.append(Repinned(account, self._worker_of(session, account)))

    @staticmethod
    def _worker_of(session: Session, account: Account) -> str | None:
        if account.worker_id is None:
            return None
        worker = session.get(Worker, account.worker_id)
        return worker.name if worker is not None else None

    def _follow(self, changed: list[Repinned], pinned: list[Pinned]) -> list[Pinned]:
        restarted = set(follow_pins(self.redis, self.dispatcher, self.offline_after, changed))
        return [
            Pinned(p.account_id, p.before, p.after, p.changed, p.account_id in restarted) if p.changed else p
            for p in pinned
        ]

    # --- checks on demand

    @audited("proxy.check", lambda a, found: [f"proxy:{c.id}" for c in found or []] or _ASKED(a, None) or ["proxy:all"])
    def check(self, proxy_ids: list[int] | None = None) -> list[CheckView]:
        """Have workers check proxies now (each on a worker whose accounts use it, else on an online one), then
        record what the checks say, as the backend's scan would."""
        with self.sessions() as session:
            if proxy_ids:
                pool = [proxies_db.get_proxy(session, proxy_id) for proxy_id in dict.fromkeys(proxy_ids)]
            else:
                pool = list(session.scalars(select(Proxy).order_by(Proxy.id)))
        if not pool:
            return []
        snapshot = presence.read_all_heartbeats(self.redis)
        online = snapshot.online(self.offline_after)
        if not online:
            raise ProxyError("no worker is online to check proxies", "proxy_no_worker")
        users: dict[int, str] = {}
        for name, usage in sorted(proxy_health.read_usage(self.redis, online).items()):
            for used in usage.accounts.values():
                if used is not None:
                    users.setdefault(used, name)
        by_worker: dict[str, list[ProxyTarget]] = {}
        for proxy in pool:
            worker = users.get(proxy.id) or online[proxy.id % len(online)]
            by_worker.setdefault(worker, []).append(ProxyTarget(proxy_id=proxy.id, proxy_enc=proxy.url_enc))
        outcomes: dict[int, tuple[str, dict[str, object]]] = {}
        for worker, targets in by_worker.items():
            answer = self.dispatcher.call(worker, TaskName.CHECK_PROXIES, CheckProxies(targets=targets), CHECK_TIMEOUT)
            for result in ProxyCheckResults.model_validate(answer).results:
                outcomes[result.proxy_id] = (worker, result.model_dump())
        with self.sessions.begin() as session:
            judge(session, self.redis, self.policy, presence.server_time(self.redis), [p.id for p in pool])
            states = {load.proxy.id: load.proxy.state for load in proxies_db.proxy_loads(session, [p.id for p in pool])}
        views = []
        for proxy in pool:
            worker, result = outcomes.get(proxy.id, ("-", {"ok": False, "error": "error", "failures": 0}))
            latency = result.get("latency_ms")
            views.append(
                CheckView(
                    proxy.id,
                    proxy.display,
                    worker,
                    bool(result.get("ok")),
                    float(latency) if isinstance(latency, int | float) else None,
                    str(result.get("error") or ""),
                    int(result.get("failures") or 0),  # type: ignore[call-overload]
                    states.get(proxy.id, proxy.state),
                )
            )
        return views
