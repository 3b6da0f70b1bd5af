"""The pool of proxies in-process, against a real Redis and both databases: adding (encrypted, masked, once),
pinning accounts (one proxy, a group balanced by load and sticky, none), caps under parallel requests, removal
(refused, or `--reassign`), and running accounts restarted onto their new proxy through their worker's queue.
Nothing stores, queues or shows a proxy's credentials in clear."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from backend.dispatch import TaskDispatcher
from backend.fleet import InvalidInput
from backend.proxies_service import ProxiesService
from celery_app import keys, presence, report
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from config import ProxyPolicy
from database import proxies as proxies_db
from database import workers as workers_db
from database.engine import open_database
from database.models import Account, FleetEvent, Proxy
from database.proxies import NoProxyInGroup, ProxyFull, ProxyInUse

OFFLINE_AFTER = 6.0
SECRET = "proxies-test-secret-key-0123456789abcdefgh"
USER, PASSWORD = "alice-user", "pr0xy-pa55word"


@pytest.fixture
def service(redis_client: Redis, database_url: str, redis_url: str) -> Iterator[ProxiesService]:
    engine, sessions = open_database(database_url)
    box = SecretBox(SECRET)
    proxies = ProxiesService(redis_client, sessions, TaskDispatcher(redis_url), OFFLINE_AFTER, lambda: box)
    proxies.policy_loader = lambda: ProxyPolicy(check_seconds=60, slow_ms=500, dead_after=2, moves_per_scan=3)
    yield proxies
    engine.dispose()


def add_worker(service: ProxiesService, name: str) -> int:
    with service.sessions.begin() as session:
        row = workers_db.add_worker(session, name, f"addr-{name}", "test")
        session.flush()
        return row.id


def beat(redis: Redis, name: str, running: list[int] = ()) -> None:  # type: ignore[assignment]
    info = WorkerInfo(name, "a", "h", 1, "0.1.0", 0, f"inst-{name}")
    presence.register(redis, info, OFFLINE_AFTER, report=report.encode([(a, "running") for a in running]))


def add_accounts(service: ProxiesService, count: int, worker_id: int | None = None, running: bool = False) -> list[int]:
    box = SecretBox(SECRET)
    with service.sessions.begin() as session:
        rows = [
            Account(
                phone_enc=box.encrypt("+15550000000"),
                phone_lookup=uuid.uuid4().hex,
                phone_masked="+1 *** ***-00-00",
                api_id=1,
                api_hash_enc=box.encrypt("0" * 32),
                session_enc=box.encrypt("s" * 40),
                worker_id=worker_id,
                desired_state="running" if running else "stopped",
                status="stopped",
                status_detail="",
            )
            for _ in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def pool(service: ProxiesService, *urls: str, group: str = "eu", cap: int | None = None) -> list[int]:
    return [added.id for added in service.add(list(urls), group, cap, "test")]


def pins(service: ProxiesService, account_ids: list[int]) -> dict[int, int | None]:
    with service.sessions() as session:
        rows = session.execute(select(Account.id, Account.proxy_id).where(Account.id.in_(account_ids)))
        return {account_id: proxy_id for account_id, proxy_id in rows}


def loads(service: ProxiesService) -> dict[int, int]:
    return {view.id: view.accounts for view in service.list_proxies()}


def queued(redis: Redis, worker: str) -> list[tuple[str, Any]]:
    """(task name, payload) of the messages waiting in a worker's Celery queue, oldest first."""
    found = []
    for raw in reversed(redis.lrange(f"worker.{worker}", 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args[0] if args else None))
    return found


def everything_stored(service: ProxiesService, redis: Redis) -> str:
    """Every value of every row of the tables that mention proxies, and every Redis key and value, as text."""
    parts: list[str] = []
    with service.sessions() as session:
        for table in ("proxies", "accounts", "fleet_events"):
            for row in session.execute(text(f"SELECT * FROM {table}")):
                parts += [str(value) for value in row]
    for key in redis.scan_iter():
        parts.append(key)
        kind = redis.type(key)
        if kind == "string":
            parts.append(str(redis.get(key)))
        elif kind == "hash":
            parts += [f"{k}={v}" for k, v in redis.hgetall(key).items()]
        elif kind == "list":
            for raw in redis.lrange(key, 0, -1):
                parts.append(raw)
                try:
                    parts.append(base64.b64decode(json.loads(raw)["body"]).decode())
                except (ValueError, KeyError, TypeError):
                    pass
    return "\n".join(parts)


# --- the pool ---------------------------------------------------------------------------------------------


def test_a_proxy_is_stored_encrypted_shown_masked_and_added_once(service: ProxiesService, redis_client: Redis) -> None:
    url = f"socks5://{USER}:{PASSWORD}@10.0.0.1:1080"
    [added] = service.add([url, "http://10.0.0.2:3128"], "eu", 2, "test")[:1]
    assert added.added and added.display == "socks5://a***@10.0.0.1:1080"
    again = service.add([url], "us", None, "test")
    assert [(a.id, a.added) for a in again] == [(added.id, False)]  # the same URL: the same proxy, unchanged
    views = {view.id: view for view in service.list_proxies()}
    assert views[added.id].to_json() | {"checked_at": None} == {
        "id": added.id,
        "proxy": "socks5://a***@10.0.0.1:1080",
        "scheme": "socks5",
        "group": "eu",
        "accounts": 0,
        "max_accounts": 2,
        "state": "unknown",
        "latency_ms": None,
        "checked_at": None,
        "error": "",
        "failures": 0,
    }
    assert [view.display for view in service.list_proxies("eu")][1] == "http://10.0.0.2:3128"
    with service.sessions() as session:
        stored = session.get(Proxy, added.id)
        assert stored is not None and SecretBox(SECRET).decrypt(stored.url_enc) == url
    assert "mtproxy://***@" in service.add(["mtproxy://" + "ab" * 16 + "@10.0.0.3:443"], "eu", None, "t")[0].display
    with pytest.raises(InvalidInput):
        service.add(["socks5://10.0.0.9:1080", "ftp://10.0.0.9:21"], "eu", None, "test")  # all or none
    assert len(service.list_proxies()) == 3
    with pytest.raises(InvalidInput):
        service.add(["socks5://10.0.0.9:1080"], "bad group!", None, "test")
    stored_text = everything_stored(service, redis_client)
    assert PASSWORD not in stored_text and USER not in stored_text


def test_pinning_to_a_group_balances_by_load_and_is_sticky(service: ProxiesService) -> None:
    first, second, third = pool(service, "socks5://10.0.0.1:1080", "socks5://10.0.0.2:1080", "socks5://10.0.0.3:1080")
    [elsewhere] = pool(service, "socks5://10.9.9.9:1080", group="us")
    accounts = add_accounts(service, 6)
    service.set_proxy(accounts[:1], "test", proxy_id=first)
    pinned = service.set_proxy(accounts, "test", group="eu")
    assert loads(service) == {first: 2, second: 2, third: 2, elsewhere: 0}
    assert not pinned[0].changed and pinned[0].after == f"#{first} socks5://10.0.0.1:1080"  # it was in the group
    before = pins(service, accounts)
    again = service.set_proxy(accounts, "test", group="eu")
    assert pins(service, accounts) == before and not any(p.changed for p in again)  # sticky
    with service.sessions.begin() as session:
        session.execute(update(Proxy).where(Proxy.id == first).values(state="dead"))
    service.set_proxy(accounts, "test", group="eu")  # only those on the dead one move, to the least loaded
    after = pins(service, accounts)
    assert first not in after.values() and sorted(loads(service).values()) == [0, 0, 3, 3]
    assert {a: p for a, p in after.items() if before[a] != first} == {a: p for a, p in before.items() if p != first}
    service.set_proxy(accounts[:2], "test", group="us")
    service.set_proxy(accounts[2:3], "test", none=True)
    assert [pins(service, accounts)[a] for a in accounts[:3]] == [elsewhere, elsewhere, None]
    with service.sessions() as session:
        assert session.get(Account, accounts[2]).proxy_enc is None  # type: ignore[union-attr]
        moved = session.get(Account, accounts[0])
        proxy = session.get(Proxy, elsewhere)
        assert moved is not None and proxy is not None and moved.proxy_enc == proxy.url_enc
        said = session.scalars(
            select(FleetEvent.detail).where(FleetEvent.subject == f"account:{accounts[2]}").order_by(FleetEvent.id)
        ).all()
    assert said[-1] == f"proxy #{before[accounts[2]]} socks5://10.0.0.{before[accounts[2]]}:1080 -> none"


def test_a_dead_proxy_or_a_full_one_is_refused_whole(service: ProxiesService) -> None:
    [small] = pool(service, "socks5://10.0.0.1:1080", cap=2)
    [dead] = pool(service, "socks5://10.0.0.2:1080")
    accounts = add_accounts(service, 3)
    with pytest.raises(ProxyFull):
        service.set_proxy(accounts, "test", proxy_id=small)
    assert set(pins(service, accounts).values()) == {None}  # nothing half-done
    with service.sessions.begin() as session:
        session.execute(update(Proxy).where(Proxy.id == dead).values(state="dead"))
    with pytest.raises(proxies_db.ProxyDead):
        service.set_proxy(accounts[:1], "test", proxy_id=dead)
    with pytest.raises(NoProxyInGroup):
        service.set_proxy(accounts, "test", group="eu")  # room for 2 of 3 on the live one
    with pytest.raises(proxies_db.ProxyNotFound):
        service.set_proxy(accounts, "test", proxy_id=999)


def test_the_database_refuses_an_account_over_its_proxys_cap(service: ProxiesService) -> None:
    [proxy] = pool(service, "socks5://10.0.0.1:1080", cap=1)
    first, second = add_accounts(service, 2)
    with service.sessions.begin() as session:
        session.execute(update(Account).where(Account.id == first).values(proxy_id=proxy))
    with pytest.raises(DBAPIError) as refused, service.sessions.begin() as session:
        session.execute(update(Account).where(Account.id == second).values(proxy_id=proxy))
    assert proxies_db.is_cap_refusal(refused.value)


@pytest.mark.parametrize("by_group", [False, True])
def test_caps_hold_under_parallel_requests(service: ProxiesService, by_group: bool) -> None:
    """Twenty operators pin one account each at the same moment: the caps hold, and a group stays balanced."""
    proxies = pool(service, "socks5://10.0.0.1:1080", "socks5://10.0.0.2:1080", cap=4) if by_group else []
    if not by_group:
        proxies = pool(service, "socks5://10.0.0.1:1080", cap=5)
    accounts = add_accounts(service, 20)
    start = threading.Barrier(len(accounts))
    outcomes: dict[int, str] = {}

    def pin(account_id: int) -> None:
        start.wait()
        try:
            if by_group:
                service.set_proxy([account_id], "test", group="eu")
            else:
                service.set_proxy([account_id], "test", proxy_id=proxies[0])
            outcomes[account_id] = "pinned"
        except (ProxyFull, NoProxyInGroup) as error:
            outcomes[account_id] = error.code

    threads = [threading.Thread(target=pin, args=(a,)) for a in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = 8 if by_group else 5
    assert sorted(outcomes.values()).count("pinned") == expected, outcomes
    assert set(outcomes.values()) - {"pinned"} == {"proxy_group_full" if by_group else "proxy_full"}
    assert sum(loads(service).values()) == expected
    if by_group:
        assert sorted(loads(service).values()) == [4, 4]
    with service.sessions() as session:
        assert session.scalar(select(func.count()).where(Account.proxy_id.is_not(None))) == expected


def test_removal_is_refused_while_accounts_use_it_unless_they_are_reassigned(service: ProxiesService) -> None:
    first, second, third = pool(service, "socks5://10.0.0.1:1080", "socks5://10.0.0.2:1080", "socks5://10.0.0.3:1080")
    with service.sessions.begin() as session:
        session.execute(update(Proxy).where(Proxy.id == third).values(max_accounts=1))
    accounts = add_accounts(service, 4)
    service.set_proxy(accounts, "test", proxy_id=first)
    with pytest.raises(ProxyInUse):
        service.remove(first, False, "test")
    moved = service.remove(first, True, "test")
    assert [m.changed for m in moved] == [True] * 4
    assert loads(service) == {second: 3, third: 1}  # least loaded first, the cap kept
    with service.sessions() as session:
        removed = session.scalars(select(FleetEvent).where(FleetEvent.kind == "proxy.removed")).all()
        assert [e.subject for e in removed] == [f"proxy:{first}"]
    with pytest.raises(proxies_db.ProxyNotFound):
        service.remove(first, True, "test")
    [lonely] = pool(service, "socks5://10.1.0.1:1080", group="asia")
    service.set_proxy(accounts[:1], "test", proxy_id=lonely)
    with pytest.raises(NoProxyInGroup):
        service.remove(lonely, True, "test")  # nowhere to go in its group: nothing changes
    assert pins(service, accounts[:1]) == {accounts[0]: lonely}
    service.remove(third, True, "test")
    assert set(loads(service)) == {second, lonely} and sum(loads(service).values()) == 4


def test_running_accounts_restart_onto_their_new_proxy(service: ProxiesService, redis_client: Redis) -> None:
    worker_id = add_worker(service, "w1")
    running, stopped_here, elsewhere = add_accounts(service, 3, worker_id, running=True)
    beat(redis_client, "w1", running=[running])
    redis_client.hset(keys.worker_specs("w1"), mapping={str(running): "old", str(stopped_here): "old"})
    [proxy] = pool(service, f"socks5://{USER}:{PASSWORD}@10.0.0.1:1080")
    pinned = service.set_proxy([running, stopped_here, elsewhere], "test", proxy_id=proxy)
    assert [(p.account_id, p.restarted) for p in pinned] == [(running, True), (stopped_here, False), (elsewhere, False)]
    [(task, payload)] = queued(redis_client, "w1")
    assert task == "fleet.account.restart" and payload["spec"]["account_id"] == running
    assert payload["spec"]["proxy_id"] == proxy and payload["wait_for_lease"] > 0
    assert SecretBox(SECRET).decrypt(payload["spec"]["proxy_enc"]) == f"socks5://{USER}:{PASSWORD}@10.0.0.1:1080"
    specs = redis_client.hgetall(keys.worker_specs("w1"))  # what the worker resumes from after a restart of its own
    assert json.loads(specs[str(stopped_here)])["proxy_id"] == proxy and str(elsewhere) not in specs
    stored_text = everything_stored(service, redis_client)
    assert PASSWORD not in stored_text and USER not in stored_text
