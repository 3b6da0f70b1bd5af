"""Benchmark: account operations and plugins on one worker with fake clients.

Part 1: `check` over 1,000 accounts on a real `run_worker.py` (embedded Redis), sent as `accounts op` sends
them (one message per 500), timed until Redis shows every operation finished:
  a) the accounts are running: each check uses the account's client; the limit is WORKER_OPERATIONS at a
     time (the fake @SpamBot answers at once, so each check takes about one SpamBot poll);
  b) the accounts are stopped: each check connects its own client, paced by WORKER_CONNECTS_PER_SECOND —
     the bar is that the pacing limit, not the executor, sets the pace (>= 90 % of it), at <= 300 MB RSS.
Part 2: the added latency of a plugin's handler per event: the host's wrapper (its own named task, error
counting) against calling the same handler directly, on one event loop.

    .venv/bin/python bench/operations.py [--accounts 1000] [--rate 100] [--operations 32]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from backend.dispatch import TaskDispatcher
from bench.common import API_HASH, SECRET_KEY, rss_mb, start_worker, stop, worker_env
from celery_app import keys
from celery_app.contract import MAX_BATCH, AccountSpec, OperateMany, OperationRequest, StartAccounts, TaskName
from celery_app.operations import OperationName
from common.crypto import SecretBox
from scripts.embedded_redis import EmbeddedRedis
from tests.support.fake_telegram import session_for

BAR_PACING_SHARE = 0.9
BAR_RSS_MB = 300.0


def specs(accounts: int) -> list[AccountSpec]:
    box = SecretBox(SECRET_KEY)
    api_hash_enc = box.encrypt(API_HASH)
    return [
        AccountSpec(
            account_id=i + 1,
            phone_enc=box.encrypt(f"+1555{i:07d}"),
            api_id=12345,
            api_hash_enc=api_hash_enc,
            session_enc=box.encrypt(session_for(f"+1555{i:07d}")),
        )
        for i in range(accounts)
    ]


def finished(redis: Redis, worker: str, ids: list[int]) -> int:
    pipe = redis.pipeline(transaction=False)
    for operation_id in ids:
        pipe.hget(keys.operation(worker, operation_id), "status")
    return sum(1 for status in pipe.execute() if status in ("done", "failed", "worker_lost"))


def count_running(redis: Redis, worker: str, ids: list[int]) -> int:
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hget(keys.account_state(worker, account_id), "status")
    return sum(1 for status in pipe.execute() if status == "running")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(0.05)


def check_all(
    server: EmbeddedRedis, accounts: int, rate: float, operations: int, running: bool, workdir: Path, first_id: int
) -> dict[str, float]:
    redis = Redis.from_url(server.url, decode_responses=True)
    name = "ops-running" if running else "ops-stopped"
    env = worker_env(
        server.url,
        name,
        4,
        WORKER_OPERATIONS=str(operations),
        WORKER_CONNECTS_PER_SECOND="10000" if running else f"{rate:g}",
    )
    worker = start_worker(redis, env, workdir)
    try:
        dispatcher = TaskDispatcher(server.url)
        wire = specs(accounts)
        if running:
            for start in range(0, len(wire), MAX_BATCH):
                dispatcher.send(name, TaskName.START_ACCOUNTS, StartAccounts(specs=wire[start : start + MAX_BATCH]))
            ids = [spec.account_id for spec in wire]
            wait_for(lambda: count_running(redis, name, ids) == len(ids), 120, "all running")
        operation_ids = list(range(first_id, first_id + accounts))
        requests = [
            OperationRequest(operation_id=op, name=OperationName.CHECK, params={}, spec=spec)
            for op, spec in zip(operation_ids, wire, strict=True)
        ]
        rss_before = rss_mb(worker.pid)
        peak = rss_before
        started = time.perf_counter()
        for start in range(0, len(requests), MAX_BATCH):
            dispatcher.send(name, TaskName.OPERATE, OperateMany(requests=requests[start : start + MAX_BATCH]))
        while finished(redis, name, operation_ids) < accounts:
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {finished(redis, name, operation_ids)} of {accounts} finished")
            peak = max(peak, rss_mb(worker.pid))
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        failed = sum(1 for op in operation_ids if redis.hget(keys.operation(name, op), "status") != "done")
        return {"seconds": elapsed, "per_second": accounts / elapsed, "rss": peak, "failed": failed}
    finally:
        stop(worker)


async def plugin_latency(events: int) -> tuple[float, float]:
    """Median microseconds per event: the handler called directly, and through the plugin host's wrapper."""
    from common.plugin_catalogue import discover
    from worker.plugins.host import PluginHost

    class Client:
        def __init__(self) -> None:
            self.handlers: list[Any] = []

        def add_event_handler(self, callback: Any, event: Any = None) -> None:
            self.handlers.append(callback)

        def remove_event_handler(self, callback: Any, event: Any = None) -> int:
            self.handlers.remove(callback)
            return 1

        def list_event_handlers(self) -> list[Any]:
            return [(h, None) for h in self.handlers]

    seen: list[int] = []

    async def handler(event: Any) -> None:
        seen.append(event)

    direct = []
    for i in range(events):
        started = time.perf_counter()
        await handler(i)
        direct.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench_counter.py").write_text(
            "SEEN = []\n"
            "def setup(client, context):\n"
            "    async def on_event(event):\n"
            "        SEEN.append(event)\n"
            "    client.add_event_handler(on_event)\n"
        )
        catalogue = discover(folder)
        redis = Redis.from_url(BENCH_REDIS_URL, decode_responses=True)
        host = PluginHost(redis, "bench", catalogue, block_threshold=1.0)
        client = Client()
        await host.attach(1, client, {"bench_counter": {}})
        (wrapped,) = client.handlers
        through = []
        for i in range(events):
            started = time.perf_counter()
            await wrapped(i)
            through.append(time.perf_counter() - started)
        await host.detach(1)
    return statistics.median(direct) * 1e6, statistics.median(through) * 1e6


BENCH_REDIS_URL = ""


def main() -> int:
    global BENCH_REDIS_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="WORKER_CONNECTS_PER_SECOND for part 1b")
    parser.add_argument("--operations", type=int, default=32, help="WORKER_OPERATIONS")
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis() as server:
        BENCH_REDIS_URL = server.url
        workdir = Path(folder)
        print(f"check over {args.accounts} accounts on one worker (WORKER_OPERATIONS={args.operations})")
        running = check_all(server, args.accounts, args.rate, args.operations, True, workdir, 1)
        print(
            f"  a) running accounts: {running['seconds']:.1f} s, {running['per_second']:.0f} checks/s, "
            f"peak RSS {running['rss']:.0f} MB, failed {running['failed']:.0f}"
        )
        stopped = check_all(server, args.accounts, args.rate, args.operations, False, workdir, 100_001)
        # The connect bucket lets `rate` connects go at once, then `rate` a second: the fastest pacing allows.
        allowed = max(0.0, args.accounts - math.ceil(args.rate)) / args.rate
        share = allowed / stopped["seconds"] if stopped["seconds"] else 0.0
        print(
            f"  b) stopped accounts, paced at {args.rate:g} connects/s: {stopped['seconds']:.1f} s "
            f"({stopped['per_second']:.1f} checks/s); the pacing allows {allowed:.1f} s at best, so the executor "
            f"reaches {share:.0%} of the pacing limit; peak RSS {stopped['rss']:.0f} MB, failed {stopped['failed']:.0f}"
        )
        direct, through = asyncio.run(plugin_latency(args.events))
        print(
            f"plugin handler per event: direct {direct:.1f} µs, through the host {through:.1f} µs "
            f"(+{through - direct:.1f} µs)"
        )
    ok = (
        share >= BAR_PACING_SHARE
        and max(running["rss"], stopped["rss"]) <= BAR_RSS_MB
        and running["failed"] == 0
        and stopped["failed"] == 0
    )
    print(
        f"bar: stopped-account checks >= {BAR_PACING_SHARE:.0%} of the pacing limit, RSS <= {BAR_RSS_MB:.0f} MB, "
        f"none failed: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
