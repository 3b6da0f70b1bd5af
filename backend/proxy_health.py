"""The backend's proxy step, after every scan (level-triggered, as the scan): judge each pool proxy from the
workers' latest checks, move the accounts behind dead proxies, and keep every running account on its pin.

- Judging (`judge`): a proxy that any worker reached recently is `alive` (`slow` when its best latency is over
  PROXY_SLOW_MS); one that every worker reporting on it failed PROXY_DEAD_AFTER times in a row is `dead`
  (a `proxy.dead` event: the admin bot alerts); a dead one that passes again is back (`proxy.alive`).
- Failover: the accounts pinned to a dead proxy are pinned to a live proxy of the same group (known alive or
  slow, least loaded, under its cap), at most PROXY_MOVES_PER_SCAN per scan, and those running are restarted
  onto it (`backend.proxy_pins`). With no live proxy in the group the accounts stay where they are — never
  silently on a direct connection — and a `proxy.no_spare` event (and one per account) says why.
- Drift: an account a worker runs through another pool proxy than its pin (a lost restart, a worker that
  resumed an old spec) is restarted onto its pin.
- Idle proxies (no account uses them, so no worker checks them) are checked on a worker every
  PROXY_CHECK_SECONDS, so that a spare is known alive before it is needed and a dead one is seen coming back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.dispatch import TaskDispatcher
from backend.proxy_pins import Repinned, follow_pins
from celery_app import presence, proxy_health
from celery_app.contract import MAX_BATCH, CheckProxies, Payload, ProxyTarget, TaskName
from celery_app.proxy_health import ProxyCheck
from common.details import Detail, detail
from config import ProxyPolicy
from database import proxies as proxies_db
from database.audit import record_audit
from database.events import NewEvent, account_subject, record_events
from database.models import Account, DesiredState, FleetEventKind, Proxy, ProxyState, Worker, epoch_to_datetime

log = logging.getLogger(__name__)
DRIFT_COOLDOWN_INTERVALS = 3  # an account restarted onto its pin is not restarted again within this many checks


def probe_detail(code: str) -> Detail:
    """A check's error code as a detail (`celery_app.proxy_health.PROBE_ERRORS`)."""
    return detail(f"probe_{code}" if code in proxy_health.PROBE_ERRORS else "probe_error")


@dataclass
class Verdict:
    state: str
    latency_ms: float | None
    error: str
    failures: int
    at: float


def verdict(checks: Iterable[ProxyCheck], now: float, policy: ProxyPolicy, current: str) -> Verdict | None:
    """What the fresh checks say of a proxy (None: nothing fresh). Any success makes it live; it is dead only
    when every worker reporting on it failed `dead_after` times in a row."""
    fresh = [check for check in checks if check.fresh(now)]
    if not fresh:
        return None
    latest = max(check.at for check in fresh)
    passed = [check for check in fresh if check.ok and check.latency_ms is not None]
    if passed:
        best = min(check.latency_ms or 0.0 for check in passed)
        state = ProxyState.SLOW if best > policy.slow_ms else ProxyState.ALIVE
        return Verdict(state.value, best, "", 0, latest)
    failures = min(check.failures for check in fresh)
    error = max(fresh, key=lambda check: check.at).error
    state = ProxyState.DEAD.value if failures >= policy.dead_after else current
    return Verdict(state, None, error, failures, latest)


def judge(session: Session, redis: Redis, policy: ProxyPolicy, now: float, ids: list[int] | None = None) -> list[int]:
    """Record what the workers' checks say of the proxies (all, or these); returns the ids that died now."""
    loads = proxies_db.proxy_loads(session, ids)
    checks = proxy_health.read_checks(redis, [load.proxy.id for load in loads])
    events: list[NewEvent] = []
    died: list[int] = []
    for load in loads:
        proxy = load.proxy
        seen = verdict(checks.get(proxy.id, []), now, policy, proxy.state)
        if seen is None:
            continue
        at = epoch_to_datetime(seen.at)
        if proxy.checked_at is not None and at <= proxy.checked_at and seen.state == proxy.state:
            continue  # nothing newer than what is recorded
        subject = proxies_db.proxy_subject(proxy.id)
        if seen.state == ProxyState.DEAD.value and proxy.state != ProxyState.DEAD.value:
            said = detail("proxy_dead", failures=seen.failures, error=probe_detail(seen.error), accounts=load.accounts)
            events.append(NewEvent(FleetEventKind.PROXY_DEAD, subject, said, at=at))
            died.append(proxy.id)
        elif proxy.state == ProxyState.DEAD.value and seen.state in proxies_db.LIVE_STATES:
            events.append(
                NewEvent(FleetEventKind.PROXY_ALIVE, subject, detail("proxy_back", ms=seen.latency_ms), at=at)
            )
        if seen.state != proxy.state:
            proxy.state_changed_at = at
        proxy.state = seen.state
        proxy.latency_ms = seen.latency_ms
        proxy.error_code = seen.error
        proxy.failures = seen.failures
        proxy.checked_at = at
    record_events(session, events)
    if died:
        log.warning("proxies dead: %s", ", ".join(f"#{proxy_id}" for proxy_id in died))
    return died


@dataclass
class HealthReport:
    died: list[int] = field(default_factory=list)
    moved: int = 0
    stuck: int = 0
    restarted: int = 0
    checks_asked: int = 0


class ProxyHealth:
    """The step itself; keeps only pacing memory between scans (what was said, asked and restarted when)."""

    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        dispatcher: TaskDispatcher,
        offline_after: float,
        policy: ProxyPolicy,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.offline_after = offline_after
        self.policy = policy
        self._no_spare_said: set[int] = set()
        self._asked: dict[int, float] = {}
        self._drift_restarted: dict[int, float] = {}

    def step(self) -> HealthReport:
        result = HealthReport()
        now = presence.server_time(self.redis)
        with self.sessions.begin() as session:
            result.died = judge(session, self.redis, self.policy, now)
            workers = {w.id: w.name for w in session.scalars(select(Worker))}
        snapshot = presence.read_all_heartbeats(self.redis)
        online = snapshot.online(self.offline_after)
        result.moved, result.stuck = self._failover(workers)
        result.restarted = self._drift(workers, online, now)
        result.checks_asked = self._ask_idle_checks(online, now)
        return result

    # --- failover

    def _failover(self, workers: dict[int, str]) -> tuple[int, int]:
        budget = self.policy.moves_per_scan
        with self.sessions() as session:
            dead = [
                (load.proxy.id, load.proxy.group_name)
                for load in proxies_db.proxy_loads(session)
                if load.proxy.state == ProxyState.DEAD.value and load.accounts
            ]
        for proxy_id in [p for p in self._no_spare_said if p not in {d for d, _ in dead}]:
            self._no_spare_said.discard(proxy_id)  # back, emptied or removed: say it again next time
        moved: list[Repinned] = []
        stuck = 0
        for proxy_id, group in dead:
            if budget <= 0:
                break
            with self.sessions.begin() as session:
                taken, left = self._move_off(session, proxy_id, group, budget, workers)
            moved += taken
            budget -= len(taken)
            stuck += left
        if moved:
            log.info("moved %d account(s) off dead proxies", len(moved))
            with self.sessions.begin() as session:
                targets = [*(f"proxy:{proxy_id}" for proxy_id, _ in dead), *(f"account:{r.account.id}" for r in moved)]
                record_audit(session, "backend", "proxy.move_off_dead", targets, {"accounts": len(moved)})
            follow_pins(self.redis, self.dispatcher, self.offline_after, moved)
        return len(moved), stuck

    def _move_off(
        self, session: Session, proxy_id: int, group: str, budget: int, workers: dict[int, str]
    ) -> tuple[list[Repinned], int]:
        """Pin up to `budget` accounts of a dead proxy to live ones of its group (locked first); returns them
        and how many had to stay for want of a live proxy with room."""
        loads = proxies_db.lock_proxies(session, group=group)
        source = next((load for load in loads if load.proxy.id == proxy_id), None)
        if source is None or source.proxy.state != ProxyState.DEAD.value:
            return [], 0  # removed, or back, meanwhile
        query = (
            select(Account)
            .where(Account.proxy_id == proxy_id)
            .order_by((Account.desired_state == DesiredState.RUNNING.value).desc(), Account.id)
        )
        accounts = list(session.scalars(query))
        moved: list[Repinned] = []
        for account in accounts[:budget]:
            target = proxies_db.choose(loads, live_only=True, exclude=proxy_id)
            if target is None:
                break
            said = detail(
                "proxy_failover",
                dead=proxy_id,
                dead_proxy=source.proxy.display,
                to=target.proxy.id,
                to_proxy=target.proxy.display,
            )
            proxies_db.pin(session, account, target.proxy, said, "backend")
            loads = proxies_db.taken(loads, target.proxy.id)
            moved.append(Repinned(account, workers.get(account.worker_id) if account.worker_id else None))
        left = len(accounts) - len(moved)
        if left and len(moved) < budget and proxy_id not in self._no_spare_said:
            self._no_spare_said.add(proxy_id)
            self._say_no_spare(session, source.proxy, [a.id for a in accounts[len(moved) :]])
        return moved, left if len(moved) < budget else 0

    @staticmethod
    def _say_no_spare(session: Session, proxy: Proxy, stuck: list[int]) -> None:
        said = detail("proxy_no_spare", group=proxy.group_name, accounts=len(stuck))
        events = [NewEvent(FleetEventKind.PROXY_NO_SPARE, proxies_db.proxy_subject(proxy.id), said)]
        per_account = detail("proxy_stuck", dead=proxy.id, dead_proxy=proxy.display, group=proxy.group_name)
        events += [NewEvent(FleetEventKind.ACCOUNT_PROXY, account_subject(a), per_account) for a in stuck]
        record_events(session, events)
        log.warning(
            "proxy #%d is dead and group %r has no live proxy with room for %d account(s)",
            proxy.id,
            proxy.group_name,
            len(stuck),
        )

    # --- drift: running through another proxy than the pin

    def _drift(self, workers: dict[int, str], online: list[str], now: float) -> int:
        usage = {name: seen for name, seen in proxy_health.read_usage(self.redis, online).items() if seen.fresh(now)}
        listed = {account_id: (name, seen) for name, seen in usage.items() for account_id in seen.accounts}
        if not listed:
            return 0
        clock = time.monotonic()
        for account_id in [a for a, at in self._drift_restarted.items() if at < clock - 3600]:
            del self._drift_restarted[account_id]
        drifted: list[Repinned] = []
        with self.sessions() as session:
            ids = sorted(listed)
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                for account in session.scalars(select(Account).where(Account.id.in_(chunk))):
                    name, seen = listed[account.id]
                    pinned = account.proxy_id if account.proxy_enc else None
                    if pinned == seen.accounts[account.id] or workers.get(account.worker_id or 0) != name:
                        continue
                    last = self._drift_restarted.get(account.id)
                    if last is not None and clock - last < DRIFT_COOLDOWN_INTERVALS * seen.every:
                        continue
                    drifted.append(Repinned(account, name))
        if not drifted:
            return 0
        drifted = drifted[: self.policy.moves_per_scan]
        restarted = follow_pins(self.redis, self.dispatcher, self.offline_after, drifted)
        for account_id in restarted:
            self._drift_restarted[account_id] = clock
        if restarted:
            log.info("restarted %d account(s) running through another proxy than their pin", len(restarted))
        return len(restarted)

    # --- idle proxies

    def _ask_idle_checks(self, online: list[str], now: float) -> int:
        if not online:
            return 0
        every = self.policy.check_seconds
        with self.sessions() as session:
            pool = list(session.scalars(select(Proxy).order_by(Proxy.id)))
        checks = proxy_health.read_checks(self.redis, [proxy.id for proxy in pool])
        clock = time.monotonic()
        wanted: dict[str, list[ProxyTarget]] = {}
        for proxy in pool:
            latest = max((check.at for check in checks.get(proxy.id, [])), default=None)
            if latest is not None and now - latest < every:
                continue  # checked recently (by a worker whose accounts use it, or on request)
            if clock - self._asked.get(proxy.id, -1e18) < every:
                continue
            self._asked[proxy.id] = clock
            worker = online[proxy.id % len(online)]  # the same worker each time: its failure count is the proxy's
            wanted.setdefault(worker, []).append(ProxyTarget(proxy_id=proxy.id, proxy_enc=proxy.url_enc))
        for proxy_id in [p for p in self._asked if p not in {proxy.id for proxy in pool}]:
            del self._asked[proxy_id]
        messages: list[tuple[str, TaskName, Payload]] = [
            (worker, TaskName.CHECK_PROXIES, CheckProxies(targets=targets[start : start + MAX_BATCH]))
            for worker, targets in wanted.items()
            for start in range(0, len(targets), MAX_BATCH)
        ]
        self.dispatcher.send_many(messages)
        return sum(len(targets) for targets in wanted.values())
