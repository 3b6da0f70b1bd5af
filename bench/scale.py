"""Benchmark: one worker, 1,000 accounts on fake clients — time to start all and the worker's memory.

Part 1 (the bar): a real `run_worker.py` process with WORKER_THREADS=4 on an embedded Redis; the starts are
sent by name to its queue in batches (as `accounts start-all` and a worker's resume send them) and the clock
stops when Redis shows all 1,000 `running`. Part 2 (the
comparison, same run): the account manager alone in a child process, 4 loop threads vs one thread (and loop)
per account, started directly. Fake clients take FAKE_TELEGRAM_DELAY (default 50 ms) to connect.
Bar: start-all <= 5 s and RSS <= 300 MB.

    .venv/bin/python bench/scale.py [--accounts 1000] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from backend.dispatch import TaskDispatcher
from bench.common import API_HASH, ROOT, SECRET_KEY, rss_mb, start_worker, stop, worker_env
from celery_app.contract import MAX_BATCH, AccountSpec, StartAccounts, TaskName
from common.crypto import SecretBox
from scripts.embedded_redis import EmbeddedRedis
from tests.support.fake_telegram import session_for

BAR_SECONDS = 5.0
BAR_RSS_MB = 300.0
CONNECT_DELAY = "0.05"


def count_running(redis: Redis, ids: list[int]) -> int:
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hget(f"fleet:account:{account_id}:status", "status")
    return sum(1 for status in pipe.execute() if status == "running")


def wait_all_running(redis: Redis, ids: list[int], timeout: float = 120) -> float:
    started = time.perf_counter()
    while count_running(redis, ids) < len(ids):
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {count_running(redis, ids)} of {len(ids)} running after {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - started


def real_worker(server: EmbeddedRedis, accounts: int, threads: int, workdir: Path) -> tuple[float, float]:
    redis = Redis.from_url(server.url, decode_responses=True)
    env = worker_env(server.url, "scale", threads, FAKE_TELEGRAM_DELAY=CONNECT_DELAY)
    worker = start_worker(redis, env, workdir)
    try:
        box = SecretBox(SECRET_KEY)
        api_hash_enc = box.encrypt(API_HASH)
        specs = [
            AccountSpec(
                account_id=i + 1,
                phone_enc=box.encrypt(f"+1555{i:07d}"),
                api_id=12345,
                api_hash_enc=api_hash_enc,
                session_enc=box.encrypt(session_for(f"+1555{i:07d}")),
            )
            for i in range(accounts)
        ]
        dispatcher = TaskDispatcher(server.url)
        idle_rss = rss_mb(worker.pid)
        started = time.perf_counter()
        # As `accounts start-all` and a worker's resume send them: MAX_BATCH starts per message.
        for first in range(0, len(specs), MAX_BATCH):
            dispatcher.send("scale", TaskName.START_ACCOUNTS, StartAccounts(specs=specs[first : first + MAX_BATCH]))
        wait_all_running(redis, [spec.account_id for spec in specs])
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
        return elapsed, max(idle_rss, rss_mb(worker.pid))
    finally:
        stop(worker)


CHILD = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from redis import Redis
from bench.common import API_HASH, rss_mb
from bench.scale import wait_all_running
from tests.support import fake_telegram
from tests.support.fake_telegram import session_for
from worker.pacing import ConnectPacer
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
redis = Redis.from_url({url!r}, decode_responses=True)
redis.flushall()
# The threading models are compared here, not the connect pacing (WORKER_CONNECTS_PER_SECOND): lifted.
manager = AccountManager(fake_telegram.factory, redis, "child", "i", {threads}, 60, pacer=ConnectPacer(10000.0))
manager.open()
ids = list(range(1, {accounts} + 1))
started = time.perf_counter()
for i in ids:
    manager.start(ClientSpec(i, f"+1555{{i:07d}}", 12345, API_HASH, session_for(f"+1555{{i:07d}}")))
wait_all_running(redis, ids)
elapsed = time.perf_counter() - started
time.sleep(0.5)
print(json.dumps({{"seconds": elapsed, "rss_mb": rss_mb(os.getpid())}}), flush=True)
os._exit(0)
"""


def manager_alone(server: EmbeddedRedis, accounts: int, threads: int) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), url=server.url, threads=threads, accounts=accounts)
    env = {"FAKE_TELEGRAM_DELAY": CONNECT_DELAY, "PATH": "/usr/bin:/bin"}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    lines = output.stdout.strip().splitlines()
    if output.returncode != 0 or not lines:
        raise RuntimeError(f"manager child failed ({output.returncode}): {output.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(workdir=tmp) as server:
        seconds, rss = real_worker(server, args.accounts, args.threads, Path(tmp))
        pooled = manager_alone(server, args.accounts, args.threads)
        per_account = manager_alone(server, args.accounts, args.accounts)
    print(f"scale benchmark: {args.accounts} accounts on fake clients ({float(CONNECT_DELAY) * 1000:.0f} ms connect)")
    rows = [
        (f"worker process, WORKER_THREADS={args.threads}, via Celery", seconds, rss),
        (f"manager alone, {args.threads} loop threads", pooled["seconds"], pooled["rss_mb"]),
        ("manager alone, one thread per account", per_account["seconds"], per_account["rss_mb"]),
    ]
    for label, took, memory in rows:
        print(f"  {label:<46} start-all {took:6.2f} s   RSS {memory:6.1f} MB")
    print(
        f"  one-thread-per-account / pooled: time x{per_account['seconds'] / pooled['seconds']:.2f}, "
        f"RSS x{per_account['rss_mb'] / pooled['rss_mb']:.2f}"
    )
    ok = seconds <= BAR_SECONDS and rss <= BAR_RSS_MB
    print(f"  bar: start-all <= {BAR_SECONDS:g} s and RSS <= {BAR_RSS_MB:g} MB -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
