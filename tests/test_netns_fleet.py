"""Hosts that really are apart: each worker in a network namespace of its own (as root; skipped otherwise).

The test's host plays the control host: Redis (password, listening on loopback and on its ends of the veth
links), PostgreSQL, the backend, the CLI and the bot. Each worker runs `run_worker.py` in its namespace with an
address of its own and reaches Redis over its `control` link and the fake Telegram's state over its `internet`
link (tests/support/netns.py). With no WORKER_ADDRESS set, the CLI and the bot show each worker at its
namespace address. The partition: one worker's control link is cut (the process keeps running), and
- the worker fences itself: Telegram sees its clients go;
- the backend records it offline and its accounts `lost` (the product does not move accounts off an offline
  worker: they stay assigned to it);
- `accounts list`, sampled every 0.2 s, never shows running an account Telegram does not see connected;
- the link restored, the same process comes back online and runs its accounts again;
- no account ever runs twice (the fake Telegram's violation list stays empty).
The fence and recovery times are printed (the figures are measured, not asserted).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from database.models import Account, Worker
from scripts.embedded_redis import EmbeddedRedis
from tests.support.bot_harness import BotHarness
from tests.support.chaos import ChaosFleet, Sampler
from tests.support.fake_telegram import live_connections
from tests.support.netns import NetnsLab, listen_on, on_host, spawn_in, unavailable
from tests.support.stack import Stack, wait_until
from worker.address import own_address, seen_by_redis

pytestmark = pytest.mark.processes
ADMIN = 4242
FLEET_PASSWORD = "netns-fleet-redis-pw"
TELEGRAM_PASSWORD = "netns-telegram-redis-pw"
PER_WORKER = 5
# A 2 s fence (half of WORKER_OFFLINE_AFTER=4): a heartbeat starved for a second on a loaded 2-core machine
# does not fence a worker the partition does not touch.
TIMING = {"HEARTBEAT_INTERVAL": "0.5", "WORKER_OFFLINE_AFTER": "4"}


class ApartFleet(ChaosFleet):
    """The chaos fleet, each worker on a `Host` of its own (its namespace, its links)."""

    def __init__(
        self, stack: Stack, fleet_redis: EmbeddedRedis, telegram_url: str, lab: NetnsLab, **kwargs: Any
    ) -> None:
        self.lab = lab
        self.hosts = {f"w{index}": host for index, host in enumerate(lab.hosts, start=1)}
        self.telegram_url = telegram_url
        super().__init__(stack, fleet_redis, telegram_url, workers=tuple(self.hosts), **kwargs)

    def start_worker(self, name: str) -> Any:
        host = self.hosts[name]
        env = {
            "WORKER_NAME": name,  # no WORKER_ADDRESS: the worker finds the address it reaches Redis from
            "REDIS_URL": on_host(self.stack.env["REDIS_URL"], host.control.host_address),
            "FAKE_TELEGRAM_REDIS": on_host(self.telegram_url, host.internet.host_address),
        }
        self.processes[name] = spawn_in(self.stack, host, "run_worker.py", env=env, log_name=f"worker-{name}")
        return self.processes[name]

    def accounts_of(self, worker_index: int) -> set[int]:
        return {i for p, i in self.ids_by_phone.items() if p.startswith(f"+1555{worker_index:03d}")}

    def recorded(self) -> dict[str, Any]:
        """What the backend wrote: worker statuses, and each account's (worker, status)."""
        with self.service.sessions() as session:
            workers = {w.id: w for w in session.scalars(select(Worker))}
            accounts = {a.id: (workers[a.worker_id].name, a.status) for a in session.scalars(select(Account))}
            return {"workers": {w.name: w.status for w in workers.values()}, "accounts": accounts}


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    made = NetnsLab()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    """The fleet's Redis and Telegram's own (the fake's connection table), for this test alone."""
    (tmp_path / "fleet-redis").mkdir()
    (tmp_path / "telegram-redis").mkdir()
    fleet = EmbeddedRedis(workdir=str(tmp_path / "fleet-redis")).start()
    telegram = EmbeddedRedis(workdir=str(tmp_path / "telegram-redis")).start()
    yield fleet, telegram
    telegram.stop()
    fleet.stop()


@pytest.fixture
def apart(
    lab: NetnsLab,
    servers: tuple[EmbeddedRedis, EmbeddedRedis],
    database_url: str,
    tmp_path: Path,
    netguard_log: Path,
) -> Iterator[ApartFleet]:
    """Two workers, each in its namespace, five accounts each, all running; backend and CLI on this host."""
    hosts = [lab.add_host(), lab.add_host()]
    fleet_redis, telegram_redis = servers
    redis_url = listen_on(fleet_redis.url, [h.control.host_address for h in hosts], FLEET_PASSWORD)
    telegram_url = listen_on(telegram_redis.url, [h.internet.host_address for h in hosts], TELEGRAM_PASSWORD)
    workdir = tmp_path / "stack"
    workdir.mkdir()
    stack = Stack(workdir, redis_url, database_url, netguard_log)
    stack.env.update(TIMING, FLEET_NETGUARD_ALLOW=lab.allowlist)
    fleet = ApartFleet(stack, fleet_redis, telegram_url, lab, per_worker=PER_WORKER)
    try:
        fleet.start()
        yield fleet
    finally:
        stack.shutdown()
        violations = fleet.violations()
        fleet.close()
    assert violations == [], "an account ran on two workers at once"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the multi-host fleet's database
def test_workers_apart_show_their_own_addresses_and_survive_a_partition(apart: ApartFleet) -> None:
    w1, w2 = apart.hosts["w1"], apart.hosts["w2"]
    assert w1.address != w2.address

    # The CLI (a real process, on the control host) shows each worker at its namespace address ...
    listed = {w["name"]: w for w in apart.stack.cli_json("list")}
    assert {name: listed[name]["address"] for name in ("w1", "w2")} == {"w1": w1.address, "w2": w2.address}
    assert all(listed[name]["status"] == "online" for name in ("w1", "w2"))
    # ... and so does the bot's worker card.
    assert _bot_worker_card(apart, "w1").count(w1.address) == 1

    mine, theirs = apart.accounts_of(0), apart.accounts_of(1)
    pid = apart.processes["w1"].pid
    sampler = Sampler(apart).start()
    try:
        cut = time.monotonic()
        apart.lab.cut(w1)
        wait_until(lambda: not (apart.live() & mine), 30, interval=0.05, message="w1 fenced: its clients gone")
        fenced = time.monotonic() - cut
        wait_until(lambda: apart.recorded()["workers"]["w1"] == "offline", 30, message="w1 recorded offline")
        offline = time.monotonic() - cut
        wait_until(
            lambda: (
                {a: s for a, s in apart.recorded()["accounts"].items() if a in mine}
                == dict.fromkeys(mine, ("w1", "lost"))
            ),
            30,
            message="w1's accounts recorded lost, still assigned to w1",
        )
        assert apart.processes["w1"].poll() is None, "cut off, not stopped"
        assert apart.live() >= theirs and apart.recorded()["workers"]["w2"] == "online"
        listed = {w["name"]: w["status"] for w in apart.stack.cli_json("list")}
        assert listed == {"w1": "offline", "w2": "online"}

        restored = time.monotonic()
        apart.lab.restore(w1)
        apart.wait_online("w1", timeout=60)
        back_online = time.monotonic() - restored
        recovery = apart.wait_all_running(60, "w1's accounts running again once its link is back")
        recovery += back_online
    finally:
        sampler.stop()
    assert apart.processes["w1"].pid == pid and apart.processes["w1"].poll() is None
    holders = {apart.ids_by_phone[p]: h for p, h in live_connections(apart.telegram).items()}
    assert {holders[a].split(":")[0] for a in mine} == {str(pid)}, "w1's accounts run on w1's same process"
    assert sampler.samples > 0 and sampler.violations == [], sampler.violations[:5]
    print(
        f"\nnetns partition (HEARTBEAT_INTERVAL=0.5, WORKER_OFFLINE_AFTER=4, fence at 2 s): w1's clients gone "
        f"{fenced:.2f} s after the cut, w1 recorded offline after {offline:.2f} s; link restored: online again "
        f"after {back_online:.2f} s, all {len(apart.all_ids)} accounts running and shown running after {recovery:.2f} s"
    )


def _bot_worker_card(fleet: ApartFleet, name: str) -> str:
    harness = BotHarness(fleet.stack.env["REDIS_URL"], fleet.stack.env["DATABASE_URL"], frozenset({ADMIN}))
    try:
        chat = harness.chat(ADMIN)
        chat.send("/workers")
        chat.click(name)
        return chat.text()
    finally:
        harness.close()


# --- the address a worker shows (worker/address.py), without namespaces


def test_a_worker_on_loopback_shows_its_host_name(redis_client: Redis) -> None:
    assert seen_by_redis(redis_client) == "127.0.0.1"
    assert own_address(redis_client) == socket.gethostname()
    assert own_address(redis_client, fallback="srv-1") == "srv-1"


def test_a_worker_redis_will_not_tell_its_address_shows_its_host_name(redis_client: Redis, redis_url: str) -> None:
    redis_client.acl_setuser(
        "narrow", enabled=True, passwords=["+narrow-pw"], keys=["*"], commands=["+@all", "-client"]
    )
    try:
        narrow = Redis.from_url(redis_url.replace("redis://", "redis://narrow:narrow-pw@", 1))
        assert narrow.ping() and seen_by_redis(narrow) is None
        assert own_address(narrow) == socket.gethostname()
        narrow.close()
    finally:
        redis_client.acl_deluser("narrow")
