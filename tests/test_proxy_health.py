"""The backend's proxy step in-process, against a real Redis and both databases: proxies judged from what the
workers' checks say (alive, slow, dead, back), the accounts of a dead proxy moved to a live one of their group,
paced, never to a direct connection; idle proxies checked on a worker; running accounts kept on their pin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from sqlalchemy import select, update

from backend.audit_service import AuditService
from backend.dispatch import TaskDispatcher
from backend.proxies_service import ProxiesService
from backend.proxy_health import ProxyHealth, verdict
from celery_app import presence, proxy_health
from celery_app.proxy_health import ProxyCheck
from common.crypto import SecretBox
from config import ProxyPolicy
from database.engine import open_database
from database.models import Account, FleetEvent, Proxy
from tests.test_proxies import OFFLINE_AFTER, SECRET, add_accounts, add_worker, beat, loads, pins, pool, queued

POLICY = ProxyPolicy(check_seconds=30, slow_ms=500, dead_after=2, moves_per_scan=3)


@pytest.fixture
def service(redis_client: Redis, database_url: str, redis_url: str) -> Iterator[ProxiesService]:
    engine, sessions = open_database(database_url)
    box = SecretBox(SECRET)
    proxies = ProxiesService(redis_client, sessions, TaskDispatcher(redis_url), OFFLINE_AFTER, lambda: box)
    proxies.policy_loader = lambda: POLICY
    yield proxies
    engine.dispose()


@pytest.fixture
def health(service: ProxiesService) -> ProxyHealth:
    return ProxyHealth(service.redis, service.sessions, service.dispatcher, OFFLINE_AFTER, POLICY)


def checked(redis: Redis, proxy_id: int, ok: bool, ms: float | None = 20.0, fails: int = 0, worker: str = "w1") -> None:
    """What a worker writes after checking a proxy (`worker.proxy_check`)."""
    at = presence.server_time(redis)
    check = ProxyCheck(worker, ok, ms if ok else None, "" if ok else "refused", 0 if ok else fails, at, 30.0)
    proxy_health.write_checks(redis, {proxy_id: check})


def states(service: ProxiesService) -> dict[int, str]:
    return {view.id: view.state for view in service.list_proxies()}


def events(service: ProxiesService, kind: str) -> list[FleetEvent]:
    with service.sessions() as session:
        return list(session.scalars(select(FleetEvent).where(FleetEvent.kind == kind).order_by(FleetEvent.id)))


def test_a_verdict_believes_any_success_and_calls_dead_only_what_every_worker_failed() -> None:
    def check(worker: str, ok: bool, fails: int = 0, ms: float = 10.0, age: float = 0.0) -> ProxyCheck:
        return ProxyCheck(worker, ok, ms if ok else None, "" if ok else "timed_out", fails, 1000.0 - age, 30.0)

    assert verdict([], 1000.0, POLICY, "unknown") is None
    assert verdict([check("a", True, age=200)], 1000.0, POLICY, "alive") is None  # stale: not believed
    seen = verdict([check("a", True, ms=30), check("b", False, fails=5)], 1000.0, POLICY, "dead")
    assert seen is not None and (seen.state, seen.latency_ms, seen.failures) == ("alive", 30, 0)
    seen = verdict([check("a", True, ms=800)], 1000.0, POLICY, "alive")
    assert seen is not None and seen.state == "slow"
    seen = verdict([check("a", False, fails=1)], 1000.0, POLICY, "alive")
    assert seen is not None and (seen.state, seen.failures, seen.error) == ("alive", 1, "timed_out")
    seen = verdict([check("a", False, fails=3), check("b", False, fails=1)], 1000.0, POLICY, "alive")
    assert seen is not None and seen.state == "alive"  # worker b has failed once only
    seen = verdict([check("a", False, fails=3), check("b", False, fails=2)], 1000.0, POLICY, "alive")
    assert seen is not None and seen.state == "dead"


def test_the_accounts_of_a_dead_proxy_move_to_live_ones_of_its_group_paced(
    service: ProxiesService, health: ProxyHealth, redis_client: Redis
) -> None:
    worker_id = add_worker(service, "w1")
    dying, spare, slow = pool(service, "socks5://10.0.0.1:1080", "socks5://10.0.0.2:1080", "socks5://10.0.0.3:1080")
    [abroad] = pool(service, "socks5://10.9.0.1:1080", group="us")
    accounts = add_accounts(service, 5, worker_id, running=True)
    service.set_proxy(accounts, "test", proxy_id=dying)
    beat(redis_client, "w1", running=accounts)
    for proxy_id, ms in ((spare, 20.0), (slow, 900.0), (abroad, 5.0)):
        checked(redis_client, proxy_id, True, ms)
    checked(redis_client, dying, False, fails=1)
    health.step()
    assert states(service) == {dying: "unknown", spare: "alive", slow: "slow", abroad: "alive"}
    assert set(pins(service, accounts).values()) == {dying}  # one failure is not death

    checked(redis_client, dying, False, fails=2)
    report = health.step()
    assert report.died == [dying] and report.moved == 3  # PROXY_MOVES_PER_SCAN
    assert states(service)[dying] == "dead"
    [died] = events(service, "proxy.dead")
    assert died.subject == f"proxy:{dying}" and died.detail == (
        "2 checks in a row failed (the proxy refused the connection); 5 account(s) behind it"
    )
    assert loads(service) == {dying: 2, spare: 3, slow: 0, abroad: 0}  # the healthy spare first
    restarts = [payload for task, payload in queued(redis_client, "w1") if task == "fleet.account.restart"]
    assert sorted(p["spec"]["account_id"] for p in restarts) == accounts[:3]
    assert {p["spec"]["proxy_id"] for p in restarts} == {spare}

    health.step()
    assert loads(service) == {dying: 0, spare: 5, slow: 0, abroad: 0}
    moved = [e for e in events(service, "account.proxy") if e.actor == "backend"]
    assert len(moved) == 5
    audit = AuditService(service.sessions).entries(action="proxy.move_off_dead")
    assert [(r.actor, r.role, r.targets) for r in reversed(audit)] == [
        ("backend", "system", (f"proxy:{dying}", *(f"account:{a}" for a in accounts[:3]))),
        ("backend", "system", (f"proxy:{dying}", *(f"account:{a}" for a in accounts[3:]))),
    ]
    assert moved[0].detail == (
        f"proxy #{dying} (socks5://10.0.0.1:1080) is dead: moved to #{spare} (socks5://10.0.0.2:1080)"
    )
    checked(redis_client, dying, True, 15.0)
    health.step()
    assert states(service)[dying] == "alive" and len(events(service, "proxy.alive")) == 1
    assert loads(service)[dying] == 0  # sticky: nothing moves back


def test_with_no_live_proxy_in_the_group_the_accounts_stay_and_the_events_say_why(
    service: ProxiesService, health: ProxyHealth, redis_client: Redis
) -> None:
    worker_id = add_worker(service, "w1")
    lonely, full = pool(service, "socks5://10.1.0.1:1080", "socks5://10.1.0.2:1080", group="asia")
    [elsewhere] = pool(service, "socks5://10.9.0.1:1080", group="us")
    accounts = add_accounts(service, 3, worker_id, running=True)
    service.set_proxy(accounts[:2], "test", proxy_id=lonely)
    service.set_proxy(accounts[2:], "test", proxy_id=full)
    with service.sessions.begin() as session:
        session.execute(update(Proxy).where(Proxy.id == full).values(max_accounts=1))
    checked(redis_client, full, True)
    checked(redis_client, elsewhere, True)
    checked(redis_client, lonely, False, fails=2)
    health.step()
    health.step()
    assert pins(service, accounts) == {accounts[0]: lonely, accounts[1]: lonely, accounts[2]: full}
    with service.sessions() as session:
        kept = session.get(Account, accounts[0])
        assert kept is not None and kept.proxy_enc is not None  # never silently direct
    [no_spare] = events(service, "proxy.no_spare")
    assert no_spare.detail == "no live proxy of group asia has room: 2 account(s) stay behind it"
    stuck = [e for e in events(service, "account.proxy") if e.actor == "backend"]
    assert [e.subject for e in stuck] == [f"account:{a}" for a in accounts[:2]]
    assert "group asia has no live proxy with room" in stuck[0].detail
    with service.sessions.begin() as session:
        session.execute(update(Proxy).where(Proxy.id == full).values(max_accounts=None))
    health.step()
    assert set(pins(service, accounts).values()) == {full}


def test_idle_proxies_are_checked_on_a_worker_and_a_drifted_account_is_restarted(
    service: ProxiesService, health: ProxyHealth, redis_client: Redis
) -> None:
    worker_id = add_worker(service, "w1")
    beat(redis_client, "w1")
    used, idle = pool(service, "socks5://10.0.0.1:1080", "socks5://10.0.0.2:1080")
    [account] = add_accounts(service, 1, worker_id, running=True)
    service.set_proxy([account], "test", proxy_id=idle)
    checked(redis_client, used, True)
    health.step()
    asked = [payload for task, payload in queued(redis_client, "w1") if task == "fleet.proxy.check"]
    assert [[t["proxy_id"] for t in p["targets"]] for p in asked] == [[idle]]
    health.step()
    assert len([t for t, _ in queued(redis_client, "w1") if t == "fleet.proxy.check"]) == 1  # not again so soon

    # The worker still runs the account through the proxy it had before (a restart that never arrived).
    beat(redis_client, "w1", running=[account])
    proxy_health.write_usage(redis_client, "w1", presence.server_time(redis_client), 30.0, {account: used})
    health.step()
    restarts = [payload for task, payload in queued(redis_client, "w1") if task == "fleet.account.restart"]
    assert [(p["spec"]["account_id"], p["spec"]["proxy_id"]) for p in restarts] == [(account, idle)]
    health.step()
    assert len([t for t, _ in queued(redis_client, "w1") if t == "fleet.account.restart"]) == 1  # cooled down


def test_the_admins_are_alerted_on_a_death_a_return_and_accounts_that_cannot_move() -> None:
    from bot.alerts import EventLine, build_alerts
    from common.details import detail

    dead = detail("proxy_dead", failures=3, error=detail("probe_refused"), accounts=12)
    lines = [
        EventLine("proxy.dead", "proxy:3", dead),
        EventLine("proxy.no_spare", "proxy:3", detail("proxy_no_spare", group="eu", accounts=12)),
        EventLine("proxy.alive", "proxy:4", detail("proxy_back", ms=12.0)),
        EventLine("proxy.added", "proxy:5", None),
    ]
    alerts = build_alerts(lines)
    assert [alert.render("en") for alert in alerts] == [
        "🔴 Proxy #3 is dead: 3 checks in a row failed (the proxy refused the connection); 12 accounts behind it",
        "⚠️ Proxy #3: its accounts cannot move: no live proxy of group eu has room: 12 accounts stay behind it",
        "🟢 Proxy #4 is back: checks pass again (12 ms)",
    ]
    assert alerts[0].render("ru").startswith("🔴 Прокси #3 мёртв: ")
