"""Benchmark: the admin bot with 1,000 workers and 10,000 accounts.

1. Page build (in-process): the workers page and an accounts page (all, and one worker's) from the services
   through the views, as a handler builds them; p95 over random pages.
2. The real `run.py` against the Bot API stand-in on 127.0.0.1: update -> reply time (the bot's answer to
   /start, and the edit after a tap on Workers), p95; then the bot process's RSS.
Bars: page p95 <= 30 ms, RSS <= 150 MB, update -> reply p95 <= 50 ms.

    .venv/bin/python bench/bot.py [--workers 1000] [--accounts 10000] [--rounds 100]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis
from sqlalchemy import insert

from bench.common import ROOT, SECRET_KEY, percentile, rss_mb, stop
from bot import views
from celery_app import keys
from common.crypto import SecretBox
from common.validation import mask_phone
from database.engine import open_database
from database.models import Account, Worker, utcnow
from scripts.embedded_redis import EmbeddedRedis
from tests.support.bot_api import TOKEN, AdminChat, BotApiStandIn
from tests.support.bot_harness import make_services

BAR_PAGE = 0.030
BAR_RSS_MB = 150.0
BAR_REPLY = 0.050
ADMIN = 777


def populate(redis: Redis, database_url: str, workers: int, accounts: int) -> None:
    _engine, sessions = open_database(database_url)
    box = SecretBox(SECRET_KEY)
    secret = box.encrypt("0" * 32)
    now = utcnow()
    with sessions.begin() as session:
        session.execute(
            insert(Worker),
            [
                {
                    "name": f"srv-{i:04d}",
                    "address": f"10.0.{i // 256}.{i % 256}",
                    "is_active": True,
                    "status": "online",
                    "created_at": now,
                    "version": "0.1.0",
                    "started_at": now,
                }
                for i in range(workers)
            ],
        )
    with sessions.begin() as session:
        session.execute(
            insert(Account),
            [
                {
                    "phone_enc": box.encrypt(f"+1555{i:07d}"),
                    "phone_lookup": box.lookup(f"+1555{i:07d}"),
                    "phone_masked": mask_phone(f"+1555{i:07d}"),
                    "api_id": 12345,
                    "api_hash_enc": secret,
                    "session_enc": secret,
                    "worker_id": 1 + i % workers,
                    "desired_state": "running",
                    "status": "running" if i % 7 else "error",
                    "status_detail": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(accounts)
            ],
        )
    server_now = time.time()
    redis.zadd(keys.HEARTBEATS, {f"srv-{i:04d}": server_now for i in range(0, workers, 2)})


def page_builds(services, workers: int, rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"workers page": [], "accounts page": [], "a worker's accounts page": []}
    pages = max(1, workers // 10)
    for _ in range(rounds):
        started = time.perf_counter()
        views.workers_page("ru", services.fleet.workers_page(random.randrange(pages), 10))
        timings["workers page"].append(time.perf_counter() - started)
        started = time.perf_counter()
        views.accounts_page("ru", services.accounts.accounts_page(random.randrange(1000), 10), 0, None)
        timings["accounts page"].append(time.perf_counter() - started)
        worker_id = random.randrange(1, workers + 1)
        started = time.perf_counter()
        views.accounts_page("ru", services.accounts.accounts_page(0, 10, worker_id), worker_id, "srv")
        timings["a worker's accounts page"].append(time.perf_counter() - started)
    return timings


def replies(
    server: EmbeddedRedis, database_url: str, workdir: Path, rounds: int
) -> tuple[list[float], list[float], float]:
    import subprocess

    api = BotApiStandIn().start()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "REDIS_URL": server.url,
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "TG_BOT_TOKEN": TOKEN,
        "ADMIN_IDS": str(ADMIN),
        "TG_API_SERVER": api.url,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT / "tests" / "netguard"),
        "FLEET_NETGUARD": "1",
    }
    log = open(workdir / "bot.log", "wb")
    bot = subprocess.Popen([sys.executable, str(ROOT / "run.py")], cwd=workdir, env=env, stdout=log, stderr=log)
    try:
        api.core.wait_for(lambda c: c.method == "setMyCommands" and c.params.get("language_code") is None, 60)
        chat = AdminChat(api.core, api.core.push, ADMIN)
        for _ in range(5):  # warm up
            chat.send("/start")
        start_replies, tap_replies = [], []
        for _ in range(rounds):
            mark = len(api.core.calls)
            sent = time.monotonic()
            reply = chat.send("/start")
            start_replies.append(reply.at - sent)
            sent = time.monotonic()
            reply = chat.click("Воркеры")
            tap_replies.append(reply.at - sent)
            assert len(api.core.calls) > mark
        return start_replies, tap_replies, rss_mb(bot.pid)
    finally:
        stop(bot)  # type: ignore[arg-type]
        api.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(workdir=tmp) as server:
        database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        redis = Redis.from_url(server.url, decode_responses=True)
        populate(redis, database_url, args.workers, args.accounts)
        services = make_services(server.url, database_url)
        page_builds(services, args.workers, 10)  # warm up
        pages = page_builds(services, args.workers, args.rounds)
        start_replies, tap_replies, rss = replies(server, database_url, Path(tmp), args.rounds)
    print(f"bot benchmark: {args.workers} workers, {args.accounts} accounts, SQLite, Redis and Bot API on loopback")
    worst_page = 0.0
    for name, values in pages.items():
        p95 = percentile(values, 0.95)
        worst_page = max(worst_page, p95)
        print(
            f"  build {name:<26} p95 {p95 * 1000:6.2f} ms   (median {sorted(values)[len(values) // 2] * 1000:.2f} ms)"
        )
    reply_p95 = max(percentile(start_replies, 0.95), percentile(tap_replies, 0.95))
    print(f"  update -> reply, /start               p95 {percentile(start_replies, 0.95) * 1000:6.2f} ms")
    print(f"  update -> reply, tap Workers (edit)   p95 {percentile(tap_replies, 0.95) * 1000:6.2f} ms")
    print(f"  bot process RSS                       {rss:6.1f} MB")
    ok = worst_page <= BAR_PAGE and rss <= BAR_RSS_MB and reply_p95 <= BAR_REPLY
    print(
        f"  bar: pages <= {BAR_PAGE * 1000:.0f} ms, RSS <= {BAR_RSS_MB:.0f} MB, reply <= {BAR_REPLY * 1000:.0f} ms"
        f" -> {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
