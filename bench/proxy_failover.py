"""Benchmark: from a proxy's death until every account behind it is back through another proxy of its group.

Real parts throughout: the loopback MTProto server (in this process), two real SOCKS5 servers (pproxy, each its
own process) in front of it, a real worker process running real Telethon clients (no fake client factory), the
backend process, Redis and a SQLite database. N accounts are pinned to the first proxy and run through it; the
first proxy is killed; the clock runs until every account has a live connection to the server again (through
the second proxy: the first is gone and the accounts are pinned there) and is recorded on the second.

Printed: when the backend declared the proxy dead, when the last account was pinned to the spare, and when the
last account was connected again — from the kill — with the settings that decide them (check interval, failed
checks before death, scan interval, moves per scan, the worker's connects per second).

    .venv/bin/python bench/proxy_failover.py [--accounts 200] [--check 1] [--dead-after 2] [--scan 1]
        [--moves 50] [--connects-per-second 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis
from sqlalchemy import func, select

from bench.common import ROOT, SECRET_KEY, start_worker, stop, worker_env
from common.crypto import SecretBox
from common.validation import mask_phone
from config import ProxyPolicy
from database import workers as workers_db
from database.engine import open_database
from database.models import Account, FleetEvent
from sandbox.mtproto import MTProtoServer
from scripts.embedded_redis import EmbeddedRedis
from tests.support.socks_proxy import SocksProxy
from tests.support.stack import wait_until

TIMEOUT = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--check", type=float, default=1.0, help="PROXY_CHECK_SECONDS")
    parser.add_argument("--dead-after", type=int, default=2, help="PROXY_DEAD_AFTER")
    parser.add_argument("--scan", type=float, default=1.0, help="the backend's scan interval")
    parser.add_argument("--moves", type=int, default=50, help="PROXY_MOVES_PER_SCAN")
    parser.add_argument("--connects-per-second", type=float, default=20.0, help="WORKER_CONNECTS_PER_SECOND")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, workdir: Path) -> int:
    redis_server = EmbeddedRedis(workdir=str(workdir)).start()
    server = MTProtoServer().start()
    first, second = (
        SocksProxy(workdir, "bench", "bench-pass").start(),
        SocksProxy(workdir, "bench", "bench-pass").start(),
    )
    database_url = f"sqlite:///{workdir / 'fleet.db'}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        from backend.control_plane import ControlPlane

        redis = Redis.from_url(redis_server.url, decode_responses=True)
        engine, sessions = open_database(database_url)
        plane = ControlPlane(redis_server.url, database_url, 10.0, secret_key=lambda: SECRET_KEY)
        plane.proxies.policy_loader = lambda: ProxyPolicy(args.check, 1000.0, args.dead_after, args.moves)
        phones = [f"+1555{index:07d}" for index in range(args.accounts)]
        for phone in phones:
            server.add_account(phone, first_name="Bench")
        box = SecretBox(SECRET_KEY)
        with sessions.begin() as session:
            worker_id = workers_db.add_worker(session, "w1", "bench", "bench").id
            session.add_all(
                Account(
                    phone_enc=box.encrypt(phone),
                    phone_lookup=box.lookup(phone),
                    phone_masked=mask_phone(phone),
                    api_id=12345,
                    api_hash_enc=box.encrypt("0123456789abcdef0123456789abcdef"),
                    session_enc=box.encrypt(server.session_string(phone)),
                    worker_id=worker_id,
                    desired_state="running",
                    status="stopped",
                    status_detail="",
                )
                for phone in phones
            )
        dying, spare = (a.id for a in plane.proxies.add([first.url, second.url], "eu", None, "bench"))
        with sessions() as session:
            ids = list(session.scalars(select(Account.id).order_by(Account.id)))
        plane.proxies.set_proxy(ids, "bench", proxy_id=dying)
        proxy_env = {
            "PROXY_CHECK_SECONDS": str(args.check),
            "PROXY_DEAD_AFTER": str(args.dead_after),
            "PROXY_MOVES_PER_SCAN": str(args.moves),
        }
        env = worker_env(redis_server.url, "w1", 4, **proxy_env)
        del env["FLEET_CLIENT_FACTORY"]  # real Telethon
        env.update(
            WORKER_CONNECTS_PER_SECOND=str(args.connects_per_second),
            TG_MTPROTO_DC=server.dc_setting,
            TG_MTPROTO_PUBKEY=server.write_public_key(workdir / "mtproto.pub"),
        )
        processes.append(start_worker(redis, env, workdir))
        backend_env = {**env, "DATABASE_URL": database_url}
        with open(workdir / "backend.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(ROOT / "run_backend.py"), str(args.scan)],
                    cwd=workdir,
                    env=backend_env,
                    stdout=log,
                    stderr=log,
                )
            )

        def connected() -> int:
            return sum(1 for phone in phones if server.live_connections(phone) == 1)

        started = time.monotonic()
        wait_until(lambda: connected() == len(phones), TIMEOUT, interval=0.2, message="every account connected")
        print(f"{len(phones)} accounts connected through proxy #{dying} in {time.monotonic() - started:.1f} s")
        wait_until(
            lambda: {v.id: v.state for v in plane.proxies.list_proxies()} == {dying: "alive", spare: "alive"},
            TIMEOUT,
            interval=0.2,
            message="both proxies checked alive",
        )

        first.kill()
        killed = time.monotonic()
        dead_at = pinned_at = None
        while time.monotonic() - killed < TIMEOUT:
            now = time.monotonic() - killed
            with sessions() as session:
                if dead_at is None and session.scalar(select(func.count()).where(FleetEvent.kind == "proxy.dead")):
                    dead_at = now
                on_spare = session.scalar(select(func.count()).where(Account.proxy_id == spare))
            if pinned_at is None and on_spare == len(phones):
                pinned_at = now
            if pinned_at is not None and connected() == len(phones):
                break
            time.sleep(0.1)
        back_at = time.monotonic() - killed
        assert connected() == len(phones), f"only {connected()} of {len(phones)} connected again"
        assert server.duplicates == [], "an account had two connections at once"
        print(
            f"settings: PROXY_CHECK_SECONDS={args.check:g} PROXY_DEAD_AFTER={args.dead_after} scan={args.scan:g}s "
            f"PROXY_MOVES_PER_SCAN={args.moves} WORKER_CONNECTS_PER_SECOND={args.connects_per_second:g}"
        )
        print(f"proxy #{dying} killed; declared dead after {dead_at:.1f} s")
        print(f"all {len(phones)} accounts pinned to proxy #{spare} after {pinned_at:.1f} s")
        print(f"all {len(phones)} accounts connected again (through #{spare}) after {back_at:.1f} s")
        engine.dispose()
        return 0
    finally:
        for process in processes:
            stop(process)
        first.kill()
        second.kill()
        server.stop()
        redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
