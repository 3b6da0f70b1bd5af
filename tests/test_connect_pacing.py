"""Connect pacing: a worker's clients dial Telegram at most WORKER_CONNECTS_PER_SECOND, and every retry is jittered.

The timing tests record when each fake client dials and assert lower bounds (the pace was kept) and bounds on
bursts (no window holds more dials than the bucket allows); they set no tight upper bound on wall-clock time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from backend.account_sync import AccountSync
from backend.dispatch import TaskDispatcher
from backend.reconciler import Reconciler
from celery_app.account_state import AccountStatus, read_states
from celery_app.contract import queue_for
from celery_app.presence import WorkerInfo
from common.crypto import SecretBox
from common.details import detail
from config import ConfigError, load_worker_settings
from database.engine import open_database
from tests.support import fake_telegram
from tests.support.fake_telegram import FakeClient
from tests.support.stack import TEST_SECRET_KEY, wait_until
from tests.test_level_triggered import OFFLINE_AFTER, account, beat, started_ids, worker
from tests.test_manager import live, spec, wire_spec
from worker import telegram as worker_telegram
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
from worker.failures import backoff_delay, flood_delay
from worker.pacing import ConnectPacer, jittered
from worker.runtime import WorkerRuntime
from worker.secrets import WorkerSecrets


class Recorder:
    """A client factory of fake clients that records every dial: (monotonic time, account id)."""

    def __init__(self) -> None:
        self.dials: list[tuple[float, int]] = []
        self.clients: list[RecordingClient] = []
        self.lock = threading.Lock()

    def __call__(self, client_spec: ClientSpec) -> RecordingClient:
        client = RecordingClient(client_spec, self)
        with self.lock:
            self.clients.append(client)
        return client

    def times(self, after: float = 0.0) -> list[float]:
        with self.lock:
            return sorted(at for at, _account in self.dials if at >= after)


class RecordingClient(FakeClient):
    def __init__(self, client_spec: ClientSpec, recorder: Recorder) -> None:
        super().__init__(client_spec)
        self.recorder = recorder
        self.loop: asyncio.AbstractEventLoop | None = None

    async def connect(self) -> None:
        with self.recorder.lock:
            self.recorder.dials.append((time.monotonic(), self.spec.account_id))
        self.loop = asyncio.get_running_loop()
        await super().connect()

    def drop(self) -> None:
        """The network drops this connection (from any thread)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._release)


def most_in_a_window(times: list[float], window: float) -> int:
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def assert_paced(times: list[float], pacer: ConnectPacer) -> None:
    """No window of the dials holds more than the bucket plus the rate over the window (and a little slack)."""
    for window in (0.1, 0.5, 1.0, 2.0):
        allowed = pacer.burst + pacer.rate * window + 3
        assert most_in_a_window(times, window) <= allowed, (window, most_in_a_window(times, window), allowed)


@pytest.fixture(autouse=True)
def _fake_telegram_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake Telegram without a script or a Redis of its own: every connect succeeds."""
    monkeypatch.delenv("FAKE_TELEGRAM_SCRIPT", raising=False)
    monkeypatch.delenv("FAKE_TELEGRAM_REDIS", raising=False)
    monkeypatch.setattr(fake_telegram, "_redis_client", None)


@pytest.fixture
def managers(redis_client: Redis) -> Iterator[list[AccountManager]]:
    made: list[AccountManager] = []
    yield made
    for manager in made:
        manager.shutdown(timeout=10)


def _manager(
    managers: list[AccountManager], redis: Redis, factory: Any, pacer: ConnectPacer, name: str = "w1"
) -> AccountManager:
    manager = AccountManager(factory, redis, name, f"inst-{name}-{len(managers)}", 2, 10.0, pacer=pacer)
    manager.open()
    managers.append(manager)
    return manager


def _all_running(redis: Redis, ids: list[int], timeout: float) -> None:
    def running() -> bool:
        states = read_states(redis, dict.fromkeys(ids, "w1"))
        return all(i in states and states[i].status == AccountStatus.RUNNING for i in ids)

    wait_until(running, timeout, interval=0.2, message="all running")


# --- the bucket -----------------------------------------------------------------------------------------------


def test_the_bucket_lets_a_burst_through_then_the_rate() -> None:
    now = [100.0]
    pacer = ConnectPacer(10, clock=lambda: now[0])
    assert pacer.burst == 10
    assert [pacer.reserve() for _ in range(10)] == [0.0] * 10
    waits = [pacer.reserve() for _ in range(5)]  # each in line behind the one before
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    pacer.give_back()  # the last one was stopped while waiting
    now[0] += 0.5
    assert pacer.reserve() == pytest.approx(0.0)
    now[0] += 60  # idle: the bucket refills to its size, not beyond
    assert [pacer.reserve() for _ in range(11)][-2:] == [0.0, pytest.approx(0.1)]
    slow = ConnectPacer(0.5, clock=lambda: now[0])
    assert slow.burst == 1 and slow.reserve() == 0.0 and slow.reserve() == pytest.approx(2.0)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            ConnectPacer(bad)


def test_waiters_woken_late_by_a_starved_loop_still_dial_at_the_pace() -> None:
    """A loop thread starved of CPU wakes every waiter whose place in line came up meanwhile at once; the
    dials still keep to the burst plus the rate (this failed on a busy 2-core machine: 68 dials in 0.1 s)."""
    pacer = ConnectPacer(50, burst=5)
    dialled: list[float] = []

    async def dial() -> None:
        assert await pacer.wait_turn()
        dialled.append(time.monotonic())

    async def main() -> None:
        waiters = [asyncio.create_task(dial()) for _ in range(80)]
        await asyncio.sleep(0)  # every waiter has its place in line
        time.sleep(1.0)  # the loop is starved: ~50 places come up while nothing runs
        await asyncio.gather(*waiters)

    asyncio.run(main())
    assert len(dialled) == 80
    assert_paced(sorted(dialled), pacer)


def test_a_turn_ahead_of_the_line_counts_in_the_pace() -> None:
    now = [100.0]
    pacer = ConnectPacer(10, clock=lambda: now[0])
    assert [pacer.take_dial() for _ in range(10)] == [0.0] * 10
    assert pacer.take_dial() == pytest.approx(0.1)  # nothing taken: it is not there yet
    pacer.take_turn_now()  # a login goes ahead, and the next dial waits the longer for it
    assert pacer.take_dial() == pytest.approx(0.2)
    assert [pacer.reserve() for _ in range(10)][-2:] == [0.0, pytest.approx(0.1)]  # it took a place in line too


def test_every_backoff_is_jittered() -> None:
    delays = [backoff_delay(1) for _ in range(200)]
    assert all(1.5 <= d <= 2.5 for d in delays) and max(delays) - min(delays) > 0.5
    assert len({round(backoff_delay(12), 3) for _ in range(50)}) > 40 and backoff_delay(12) <= 300 * 1.25
    floods = [flood_delay(120) for _ in range(200)]
    assert all(120 <= d <= 132 for d in floods) and max(floods) - min(floods) > 5  # never sooner than asked
    assert all(3600 <= flood_delay(3600) <= 3660 for _ in range(50))
    assert all(0.75 <= jittered(1.0) <= 1.25 for _ in range(100))


def test_the_rate_is_a_worker_setting(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    monkeypatch.delenv("WORKER_CONNECTS_PER_SECOND", raising=False)
    assert load_worker_settings().connects_per_second == 20
    monkeypatch.setenv("WORKER_CONNECTS_PER_SECOND", "0.5")
    assert load_worker_settings().connects_per_second == 0.5
    for bad in ("0", "-3", "fast", "nan", "inf", "100000"):
        monkeypatch.setenv("WORKER_CONNECTS_PER_SECOND", bad)
        with pytest.raises(ConfigError, match="WORKER_CONNECTS_PER_SECOND must be a number above 0"):
            load_worker_settings()


# --- the worker -----------------------------------------------------------------------------------------------


def test_200_accounts_started_at_once_connect_at_the_configured_rate(
    managers: list[AccountManager], redis_client: Redis
) -> None:
    recorder, pacer = Recorder(), ConnectPacer(50)
    manager = _manager(managers, redis_client, recorder, pacer)
    box = SecretBox(TEST_SECRET_KEY)
    runtime = WorkerRuntime(
        WorkerInfo("w1", "", "", 1, "", 0, manager.holder), 2, manager, WorkerSecrets.with_secret_key(box)
    )
    ids = list(range(1, 201))
    answer = runtime.start_many({"specs": [wire_spec(box, i) for i in ids]})
    assert all(result["ok"] for result in answer["results"])
    # The last in line says why it is not connecting yet.
    waiting = wait_until(lambda: (s := live(redis_client, 200)) and "turn" in s.detail and s, 30, interval=0.02)
    assert (
        waiting.status == AccountStatus.STARTING and "waiting for its turn to connect (50 per second)" in waiting.detail
    )
    _all_running(redis_client, ids, 60)
    times = recorder.times()
    assert len(times) == 200
    assert times[-1] - times[0] >= (200 - pacer.burst) / pacer.rate * 0.9  # >= ~3 s: the pace was kept
    assert_paced(times, pacer)


def test_reconnects_after_a_network_blip_are_spread_out(managers: list[AccountManager], redis_client: Redis) -> None:
    recorder, pacer = Recorder(), ConnectPacer(50)
    manager = _manager(managers, redis_client, recorder, pacer)
    ids = list(range(1, 101))
    for account_id in ids:
        assert manager.start(spec(account_id)).ok
    _all_running(redis_client, ids, 60)
    time.sleep(1.0)  # the bucket fills up again: the blip meets a full bucket
    blip = time.monotonic()
    for client in list(recorder.clients):
        client.drop()  # every connection drops at the same moment
    wait_until(lambda: len(recorder.times(after=blip)) >= 100, 60, interval=0.1, message="all reconnected")
    _all_running(redis_client, ids, 60)
    times = recorder.times(after=blip)
    assert times[0] - blip >= 1.0  # the first retry waits its (jittered) backoff: at least 2 s less a quarter
    assert times[-1] - times[0] >= 0.9  # spread by jitter and the pace, not all in the same few ms
    assert most_in_a_window(times, 0.05) <= 40
    assert_paced(times, pacer)


class CountingPacer(ConnectPacer):
    def __init__(self) -> None:
        super().__init__(10_000)
        self.turns = 0

    def reserve(self) -> float:
        self.turns += 1
        return super().reserve()


def test_every_kind_of_connect_takes_its_turn(managers: list[AccountManager], redis_client: Redis) -> None:
    recorder, pacer = Recorder(), CountingPacer()
    manager = _manager(managers, redis_client, recorder, pacer)
    box = SecretBox(TEST_SECRET_KEY)
    runtime = WorkerRuntime(
        WorkerInfo("w1", "", "", 1, "", 0, manager.holder), 2, manager, WorkerSecrets.with_secret_key(box)
    )

    def turns_for(action: Any, dials: int) -> int:
        before_turns, before_dials = pacer.turns, len(recorder.times())
        action()
        wait_until(lambda: len(recorder.times()) >= before_dials + dials, 10, message="dialled")
        return pacer.turns - before_turns

    assert turns_for(lambda: runtime.start({"spec": wire_spec(box, 1)}), 1) == 1  # a start
    assert turns_for(lambda: runtime.start_many({"specs": [wire_spec(box, i) for i in (2, 3)]}), 2) == 2  # a batch
    _all_running(redis_client, [1, 2, 3], 10)
    assert turns_for(lambda: next(c for c in recorder.clients if c.spec.account_id == 1).drop(), 1) == 1  # a reconnect
    manager.fence(detail("no_redis", seconds=3.0))
    wait_until(lambda: not manager.runners, 10, message="fenced")
    assert turns_for(manager.resume_parked, 3) == 3  # the resume after a fence
    _all_running(redis_client, [1, 2, 3], 10)
    manager.shutdown(timeout=10)
    recorder2, pacer2 = Recorder(), CountingPacer()
    restarted = _manager(managers, redis_client, recorder2, pacer2)
    runtime2 = WorkerRuntime(
        WorkerInfo("w1", "", "", 1, "", 0, restarted.holder), 2, restarted, WorkerSecrets.with_secret_key(box)
    )
    assert runtime2.resume_from_registry() == 3  # the resume of a restarted worker
    wait_until(lambda: len(recorder2.times()) >= 3, 10, message="resumed")
    assert pacer2.turns == 3
    login = restarted.send_code(restarted.new_login_id(), spec(9, session=""))
    assert login.state == "code_sent" and pacer2.turns == 4  # a login goes first, but counts


def test_telethons_own_redials_wait_a_jittered_moment_and_their_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    dialled: list[float] = []

    class Base:
        async def connect(self, timeout: float | None = None, ssl: Any = None) -> None:
            dialled.append(time.monotonic())

    monkeypatch.setattr(worker_telegram, "REDIAL_JITTER", 0.05)
    pacer = CountingPacer()
    paced = worker_telegram._paced(Base, pacer)()

    async def dial_three_times() -> None:
        for _ in range(3):
            await paced.connect(timeout=1)

    asyncio.run(dial_three_times())
    assert len(dialled) == 3 and pacer.turns == 2  # the first dial is the manager's, already paced
    assert issubclass(type(paced), Base) and type(paced).__name__ == "PacedBase"


# --- the backend ----------------------------------------------------------------------------------------------


@pytest.fixture
def reconciler(redis_client: Redis, database_url: str, redis_url: str) -> Iterator[Reconciler]:
    _engine, sessions = open_database(database_url)
    sync = AccountSync(TaskDispatcher(redis_url), lease_wait=5, cooldown=15, max_cooldown=120, batch=500)
    yield Reconciler(redis_client, sessions, OFFLINE_AFTER, sync)


def test_failed_starts_are_retried_with_jitter_not_all_in_one_scan(
    reconciler: Reconciler, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    w1 = worker(reconciler, "w1")
    ids = [account(reconciler, w1, "running", "stopped") for _ in range(40)]
    beat(redis_client, "w1", {})
    clock = [1000.0]
    monkeypatch.setattr("backend.account_sync.time.monotonic", lambda: clock[0])
    reconciler.scan()
    assert sorted(started_ids(redis_client, "w1")) == ids
    redis_client.delete(queue_for("w1"))
    clock[0] = 1000 + 15 * 0.75 - 0.01  # no wait is shorter than three quarters of the cooldown
    reconciler.scan()
    assert started_ids(redis_client, "w1") == []
    clock[0] = 1000 + 13.0
    reconciler.scan()
    some = started_ids(redis_client, "w1")
    assert 0 < len(some) < 40  # the accounts that failed together are not all retried together
    clock[0] = 1000 + 15.0
    reconciler.scan()
    assert sorted(started_ids(redis_client, "w1")) == ids  # and none waits longer than the cooldown
