"""Benchmark: recovery time after each fault, 400 accounts on two workers (fake Telegram), real processes.

The faults of the chaos suite (tests/test_chaos.py), timed: from the moment the fault is over (Redis back, the
backend or the worker started again, the network restored) until every account desired running is connected
(as the fake Telegram sees it) and shown running by `accounts list`. Throughout, a sampler checks every 0.2 s
that no account is shown running without a live client, and the fake Telegram that none ever ran twice.

Bars (HEARTBEAT_INTERVAL and the scan interval as set below):
- Redis restarted with empty data (backend up, or restarted too): <= 2 x HEARTBEAT_INTERVAL + one scan;
- events overflowed while the backend was down and a worker restarted: recorded running <= one scan after
  the backend starts acting;
- Redis emptied while a worker was down (only the backend knows its accounts): <= HEARTBEAT_INTERVAL + two
  scans after the worker is online;
- kill -9 and restart, a network cut and its repair: <= 2 x HEARTBEAT_INTERVAL + one scan after the worker
  is back (online again, or reconnected).

    .venv/bin/python bench/chaos.py [--accounts 400] [--heartbeat 1] [--offline-after 6] [--scan 2]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celery_app import keys, presence
from celery_app.app import create_celery_app
from celery_app.contract import TaskName, queue_for
from scripts.embedded_redis import EmbeddedRedis
from tests.support.chaos import ChaosFleet, Sampler, during
from tests.support.stack import Stack, wait_until

TIMEOUT = 120.0


def timed(check: Callable[[], bool], interval: float = 0.02) -> float:
    started = time.monotonic()
    wait_until(check, TIMEOUT, interval=interval, message="recovery")
    return time.monotonic() - started


def leader_started(fleet: ChaosFleet) -> float:
    try:
        wait_until(lambda: "acting as the leader" in fleet.stack.log_of(fleet.backend), 60, interval=0.02)
    except AssertionError:
        for path in sorted(fleet.stack.workdir.glob("backend-*.log")):
            print(path.name, path.read_text()[-1500:], file=sys.stderr)
        raise
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--connects-per-second", type=float, default=10000.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--offline-after", type=float, default=6.0)
    parser.add_argument("--scan", type=float, default=2.0)
    args = parser.parse_args()
    hb, scan = args.heartbeat, args.scan
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack_:
        workdir = Path(tmp)
        for folder in ("fleet-redis", "telegram-redis", "stack"):
            (workdir / folder).mkdir()
        fleet_redis = stack_.enter_context(EmbeddedRedis(workdir=str(workdir / "fleet-redis")))
        telegram_redis = stack_.enter_context(EmbeddedRedis(workdir=str(workdir / "telegram-redis")))
        guard_log = workdir / "netguard.log"
        guard_log.touch()
        stack = Stack(workdir / "stack", fleet_redis.url, f"sqlite:///{workdir / 'fleet.db'}", guard_log)
        # Recovery of the control plane itself: the connect pacing (WORKER_CONNECTS_PER_SECOND, default 20) would
        # add accounts/rate seconds to every fault by design, so it is lifted here.
        stack.env.update(
            HEARTBEAT_INTERVAL=str(hb),
            WORKER_OFFLINE_AFTER=str(args.offline_after),
            WORKER_CONNECTS_PER_SECOND=str(args.connects_per_second),
        )
        stack_.callback(stack.shutdown)
        started = time.monotonic()
        fleet = ChaosFleet(stack, fleet_redis, telegram_redis.url, per_worker=args.accounts // 2, scan_interval=scan)
        stack_.callback(fleet.close)
        fleet.start()
        print(f"chaos benchmark: {len(fleet.all_ids)} accounts on 2 workers, heartbeat {hb:g} s, scan {scan:g} s,")
        print(f"  offline after {args.offline_after:g} s; fleet up in {time.monotonic() - started:.1f} s")
        sampler = Sampler(fleet).start()

        fleet.restart_redis()
        rows.append(("Redis restarted, empty (backend up)", timed(fleet.everything_running), 2 * hb + scan))

        fleet.stop_backend()
        fleet.restart_redis()
        fleet.start_backend()
        rows.append(("Redis restarted with the backend", timed(fleet.everything_running), 2 * hb + scan))

        fleet.stop_backend()
        fleet.stack.stop(fleet.processes["w1"])
        fleet.start_worker("w1")
        fleet.wait_online("w1", timeout=60)
        fleet.flood_events(keys.EVENTS_MAXLEN + 20_000)
        wait_until(fleet.everything_running, TIMEOUT, message="w1 resumed its accounts")
        fleet.start_backend()
        leading = leader_started(fleet)
        wait_until(lambda: fleet.recorded_running() == fleet.all_ids, TIMEOUT, interval=0.02)
        rows.append(("events overflowed, worker restarted", time.monotonic() - leading, scan))

        fleet.stack.stop(fleet.processes["w1"])
        fleet.restart_redis()
        fleet.start_worker("w1")
        fleet.wait_online("w1", timeout=60)
        rows.append(("Redis emptied while a worker was down", timed(fleet.everything_running), hb + 2 * scan))

        pid = fleet.processes["w1"].pid
        connections = {p: fleet.telegram.get(f"fake:connected:{p}") for p in fleet.ids_by_phone}
        fleet.poison("w1", [b"plain text", b'["a", "json", "array"]', b'{"body": "%%%", "properties": {}}'])
        reply = create_celery_app(stack.env["REDIS_URL"]).send_task(TaskName.PING.value, queue=queue_for("w1"))
        alive = reply.get(timeout=60)["pid"] == pid
        disturbed = sum(1 for p, c in connections.items() if fleet.telegram.get(f"fake:connected:{p}") != c)
        print(f"  poison messages: worker {'still up' if alive else 'RESTARTED'}, {disturbed} clients disturbed")

        # No live source can tell a killed worker from a silent one before its fence time.
        during(sampler, presence.fence_after(args.offline_after) + 1.0, lambda: fleet.kill_worker("w1"))
        fleet.start_worker("w1")
        fleet.wait_online("w1", timeout=60)
        rows.append(("kill -9, then restart", timed(fleet.everything_running), 2 * hb + scan))

        w1_accounts = {i for p, i in fleet.ids_by_phone.items() if p.startswith("+1555000")}
        cut = time.monotonic()
        fleet.proxies["w1"].cut()
        wait_until(lambda: not (fleet.live() & w1_accounts), TIMEOUT, interval=0.02)
        stopped_after = time.monotonic() - cut
        time.sleep(args.offline_after)
        fleet.proxies["w1"].restore()
        rows.append(("network cut, then repaired", timed(fleet.everything_running), 2 * hb + scan))
        sampler.stop()

        lease = args.offline_after
        print(f"  a cut-off worker stopped its clients {stopped_after:.2f} s after the cut (lease {lease:g} s)")
        print(f"  {'fault':<40} {'recovery':>9} {'bar':>7}")
        ok = alive and disturbed == 0 and stopped_after < args.offline_after
        for name, seconds, bar in rows:
            passed = seconds <= bar
            ok &= passed
            print(f"  {name:<40} {seconds:8.2f}s {bar:6.1f}s  {'PASS' if passed else 'FAIL'}")
        twice = fleet.violations()
        ghosts = len(sampler.violations)
        print(f"  ran twice: {len(twice)}; shown running with no live client: {ghosts} of {sampler.samples} samples")
        ok &= not twice and not sampler.violations
        print(f"  -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
