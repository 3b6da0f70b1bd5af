"""Benchmark: the control plane asks to start an account -> the worker has begun starting it.

Runs a real worker process (fake Telegram) on an embedded Redis and a temp SQLite database, imports N
accounts, then times `AccountService.start` for each: desired state written, worker checked online, the
start task sent by name to `worker.<name>` and the worker's answer that it is starting. Each start is paired
with a bare Celery round trip (`ping`, the same worker) timed just before it, so both see the same load.
Bar: median start <= 2x the median round trip of the same run (what the control plane adds to Celery's
own cost: the database work before sending, the worker's registry write and lease, the answer).

    .venv/bin/python bench/dispatch.py [--accounts 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from backend.control_plane import ControlPlane
from bench.common import API_HASH, SECRET_KEY, start_worker, stop, summary, worker_env
from celery_app.contract import TaskName
from scripts.embedded_redis import EmbeddedRedis
from tests.support.fake_telegram import session_for

BAR_RATIO = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(workdir=tmp) as server:
        workdir = Path(tmp)
        plane = ControlPlane(server.url, f"sqlite:///{workdir / 'bench.db'}", 10.0, secret_key=lambda: SECRET_KEY)
        worker = start_worker(plane.redis, worker_env(server.url, "bench", 4), workdir)
        try:
            service, dispatcher = plane.accounts, plane.dispatcher
            plane.fleet.add_worker("bench", "127.0.0.1", "bench")
            ids = [
                service.import_session(
                    "bench",
                    12345,
                    API_HASH,
                    session_string=session_for(f"+1555{i:07d}"),
                    phone=f"+1555{i:07d}",
                    actor="bench",
                ).id
                for i in range(args.accounts)
            ]
            for _ in range(20):  # warm up connections and code paths
                dispatcher.call("bench", TaskName.PING, None, 10)
            bare = []
            dispatch = []
            for account_id in ids:
                started = time.perf_counter()
                dispatcher.call("bench", TaskName.PING, None, 10)
                bare.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = service.start(account_id, "bench")
                dispatch.append(time.perf_counter() - started)
                assert result.dispatched, result.message
        finally:
            stop(worker)
    ratio = statistics.median(dispatch) / statistics.median(bare)
    ok = ratio <= BAR_RATIO
    print(f"dispatch benchmark: {args.accounts} starts, one worker, Redis on loopback")
    print(f"  bare Celery round trip (ping):      {summary(bare)}")
    print(f"  start requested -> worker starting: {summary(dispatch)}")
    print(f"  start / round trip (medians):       {ratio:.2f}x")
    print(f"  bar: <= {BAR_RATIO:g}x the round trip of the same run -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
