"""Fault injection on a real fleet: backend and workers as processes, accounts on the fake Telegram.

Used by the chaos tests (tests/test_chaos.py) and by `bench/chaos.py` (the same faults, 400 accounts, timed).
Each worker reaches Redis through its own `TcpProxy`, so it can be cut off without touching Redis. The fake
Telegram keeps its connection table in a Redis of its own (Telegram's state does not vanish when the fleet's
Redis restarts): `live()` is what Telegram sees, `shown_running()` what `accounts list` says (the same service
the CLI calls, in this process). A `Sampler` compares the two every 0.2 s through a fault.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from backend.control_plane import ControlPlane
from database.models import DesiredState
from scripts.embedded_redis import EmbeddedRedis
from tests.support.fake_telegram import VIOLATIONS, live_connections, session_for
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until
from tests.support.tcp_proxy import TcpProxy

API_HASH = "0123456789abcdef0123456789abcdef"


def phone_of(worker_index: int, account_index: int) -> str:
    return f"+1555{worker_index:03d}{account_index:04d}"


@dataclass
class Sample:
    at: float
    shown: set[int]
    live: set[int]


@dataclass
class Sampler:
    """Every `interval` s: accounts shown running that Telegram does not see connected (before or after)."""

    fleet: ChaosFleet
    interval: float = 0.2
    grace_until: float = 0.0  # after a fault no live source can see at once (kill -9, a cut), until then
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Sample once before the fault (so a fault over before the next interval still has a sample), then
        every `interval` s in a thread."""
        wait_until(self._sample, 30, message="a first sample of the fleet")
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> bool:
        try:
            before = self.fleet.live()
            shown = self.fleet.shown_running()
            after = self.fleet.live()
        except (RedisError, OSError):
            return False  # the CLI would say "Redis unreachable": not a claim about any account
        self.samples += 1
        ghosts = shown - before - after
        if ghosts and time.monotonic() > self.grace_until:
            self.violations.append(f"shown running with no live client: {sorted(ghosts)} (at {time.monotonic():.2f})")
        return True


class ChaosFleet:
    """Two (or more) workers with `per_worker` accounts each, all desired running."""

    def __init__(
        self,
        stack: Stack,
        fleet_redis: EmbeddedRedis | None,
        telegram_redis_url: str,
        workers: tuple[str, ...] = ("w1", "w2"),
        per_worker: int = 10,
        scan_interval: float = 0.5,
        redis_target: str | None = None,
    ) -> None:
        """`fleet_redis` None: the processes reach Redis as the stack's environment says (e.g. through
        Sentinel), with no proxy per worker; `redis_target` is then what this process's services open."""
        self.stack = stack
        self.fleet_redis = fleet_redis
        self.workers = workers
        self.per_worker = per_worker
        self.scan_interval = scan_interval
        self.telegram = Redis.from_url(telegram_redis_url, decode_responses=True)
        stack.env.update(
            FLEET_CLIENT_FACTORY="tests.support.fake_telegram:factory",
            FAKE_TELEGRAM_REDIS=telegram_redis_url,
        )
        self.proxies = {name: TcpProxy(fleet_redis.port) for name in workers} if fleet_redis is not None else {}
        self.processes: dict[str, Any] = {}
        self.backend: Any = None
        offline_after = float(stack.env["WORKER_OFFLINE_AFTER"])
        self.offline_after = offline_after
        self.heartbeat = float(stack.env["HEARTBEAT_INTERVAL"])
        plane = ControlPlane(
            redis_target or stack.env["REDIS_URL"],
            stack.env["DATABASE_URL"],
            offline_after,
            secret_key=lambda: TEST_SECRET_KEY,
        )
        self.redis = plane.redis
        self.service = plane.accounts
        self.fleet = plane.fleet
        self.ids_by_phone: dict[str, int] = {}

    # --- set-up

    def start(self) -> ChaosFleet:
        self.start_backend()
        for name in self.workers:
            self.start_worker(name)
        self.wait_online(*self.workers)
        # Online in Redis comes first; accounts can be assigned once the backend's scan has recorded the worker.
        wait_until(
            lambda: {v.name for v in self.fleet.list_workers() if v.id is not None} >= set(self.workers),
            30,
            interval=0.1,
            message="workers recorded by the backend",
        )
        for index, name in enumerate(self.workers):
            for account in range(self.per_worker):
                phone = phone_of(index, account)
                view = self.service.import_session(
                    name, 12345, API_HASH, session_string=session_for(phone), phone=phone, actor="chaos"
                )
                self.ids_by_phone[phone] = view.id
        for name in self.workers:
            self.service.bulk(name, DesiredState.RUNNING, "chaos")
        self.wait_all_running(60, "every account running at the start")
        return self

    def start_backend(self) -> None:
        self.backend = self.stack.start_backend(interval=self.scan_interval)

    def stop_backend(self) -> None:
        self.stack.stop(self.backend)

    def start_worker(self, name: str) -> Any:
        proxied = {"REDIS_URL": self.proxies[name].url()} if name in self.proxies else {}
        self.processes[name] = self.stack.start_worker(name, **proxied)
        return self.processes[name]

    def wait_online(self, *names: str, timeout: float = 60) -> None:
        wait_until(lambda: all(self._online(name) for name in names), timeout, interval=0.1, message=f"{names} online")

    def _online(self, name: str) -> bool:
        try:
            return self.fleet.is_online(name)
        except RedisError:
            return False

    # --- what is true, what is shown

    @property
    def all_ids(self) -> set[int]:
        return set(self.ids_by_phone.values())

    def live(self) -> set[int]:
        """Accounts Telegram sees connected now."""
        return {self.ids_by_phone[p] for p in live_connections(self.telegram) if p in self.ids_by_phone}

    def shown_running(self) -> set[int]:
        """Accounts `accounts list` shows running now."""
        return {view.id for view in self.service.list_accounts() if view.status == "running"}

    def violations(self) -> list[str]:
        """Second connections Telegram refused (an account running twice)."""
        return list(self.telegram.lrange(VIOLATIONS, 0, -1))

    def everything_running(self) -> bool:
        try:
            return self.live() == self.all_ids and self.shown_running() == self.all_ids
        except (RedisError, OSError):
            return False

    def wait_all_running(self, timeout: float, message: str) -> float:
        """Seconds until every account runs and is shown running (fails after `timeout`)."""
        started = time.monotonic()
        wait_until(self.everything_running, timeout, interval=0.1, message=message)
        return time.monotonic() - started

    def recorded_running(self) -> set[int]:
        """Accounts the database records as running (what the backend wrote)."""
        with self.service.sessions() as session:
            from sqlalchemy import select

            from database.models import Account

            return set(session.scalars(select(Account.id).where(Account.status == "running")))

    # --- faults

    def restart_redis(self) -> None:
        assert self.fleet_redis is not None
        self.fleet_redis.restart()

    def kill_worker(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def poison(self, name: str, bodies: list[bytes]) -> None:
        for body in bodies:
            self.redis.lpush(f"worker.{name}", body)

    def flood_events(self, count: int) -> None:
        """Fill the event stream past its cap, as a busy fleet would while no backend reads it."""
        from celery_app import keys

        pipe = self.redis.pipeline(transaction=False)
        for index in range(count):
            pipe.xadd(
                keys.EVENTS_STREAM,
                {"kind": "account.status", "subject": "0", "data": "{}"},
                maxlen=keys.EVENTS_MAXLEN,
                approximate=True,
            )
            if index % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.redis.close()
        self.telegram.close()


def during(sampler: Sampler, grace: float, action: Callable[[], None]) -> None:
    """Run a fault; until `grace` seconds after it, a claim no live source could yet correct is tolerated."""
    sampler.grace_until = time.monotonic() + grace
    action()
    sampler.grace_until = max(sampler.grace_until, time.monotonic() + grace)
