"""A real fleet on a Sentinel-managed Redis whose primary gets `kill -9`: used by tests/test_redis_failover.py and
bench/failover.py.

The fleet is the chaos suite's (`tests/support/chaos.ChaosFleet`: two `run_worker.py`, one `run_backend.py`,
accounts on the fake Telegram whose connection table lives in a Redis of its own), reaching Redis through the
sentinels of `scripts/embedded_sentinel.EmbeddedSentinel` (REDIS_SENTINELS/REDIS_MASTER_NAME, no proxies).

    fleet = start_fleet(stack, cluster, telegram_url, per_worker=100, scan_interval=1.0)
    moves = Moves(fleet, ids, to_worker="w2").start()   # moves through the accounts service, one by one
    moves.wait_done(3)                                   # ... some done, the rest in flight
    failover = kill_primary(cluster)                     # SIGKILL; returns when the sentinels name a new one
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from common.redis_target import sentinel_target
from scripts.embedded_sentinel import EmbeddedSentinel
from tests.support.chaos import ChaosFleet
from tests.support.stack import Stack, wait_until


def start_fleet(
    stack: Stack, cluster: EmbeddedSentinel, telegram_url: str, per_worker: int, scan_interval: float
) -> ChaosFleet:
    """Two workers and a backend on the cluster, `per_worker` accounts each, all running (and shown so)."""
    stack.env.update(cluster.env())
    target = sentinel_target(cluster.redis_url(), tuple(cluster.sentinel_addresses), cluster.master_name)
    fleet = ChaosFleet(
        stack, None, telegram_url, per_worker=per_worker, scan_interval=scan_interval, redis_target=target
    )
    return fleet.start()


@dataclass(frozen=True)
class Failover:
    killed_at: float  # monotonic time of the SIGKILL
    promoted_after: float  # seconds from the kill until every sentinel names a new primary that answers as one


def kill_primary(cluster: EmbeddedSentinel, timeout: float = 120.0) -> Failover:
    killed_at = time.monotonic()
    cluster.kill_primary()
    cluster.wait_failover(timeout=timeout)
    return Failover(killed_at, time.monotonic() - killed_at)


@dataclass
class Moves:
    """Moves `account_ids` to `to_worker` one after another through the accounts service, in a thread; a move
    the failover breaks is recorded with its error (the backend's scan settles what it left)."""

    fleet: ChaosFleet
    account_ids: list[int]
    to_worker: str
    done: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> Moves:
        self._thread = threading.Thread(target=self._run, name="moves", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for account_id in self.account_ids:
            try:
                self.fleet.service.move(account_id, self.to_worker, "failover-test")
                self.done.append(account_id)
            except Exception as error:  # noqa: BLE001 - whatever the failover breaks is the point
                self.failed[account_id] = f"{type(error).__name__}: {error}"

    def wait_done(self, count: int, timeout: float = 120.0) -> None:
        wait_until(lambda: len(self.done) + len(self.failed) >= count, timeout, message=f"{count} moves done")

    def join(self, timeout: float = 300.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the moves did not finish"
