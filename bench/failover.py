"""Benchmark: the fleet through `kill -9` of its Redis primary, 200 accounts on two workers (fake Telegram).

Real processes (tests/support/failover.py): a primary, a replica and three sentinels; two workers and a backend
reaching Redis through the sentinels. The primary is killed with nothing in flight, then (once the killed node is
back as a replica) with moves in flight (a batch of accounts moving from w1 to w2 through the accounts service);
`--rounds` times each, under two timings: workers that outlast the failover (half of WORKER_OFFLINE_AFTER past
it) and workers that fence themselves meanwhile (stop every client, resume them after). Per kill:
- promoted: seconds from the kill until every sentinel names a new primary that answers as one (this includes
  Sentinel's detection, `down-after-milliseconds`);
- recovery: seconds from the kill until every account desired running is connected (as the fake Telegram sees
  it) and shown running by `accounts list`. Bar: promoted + 2 x HEARTBEAT_INTERVAL + one scan;
- ran twice: second connections the fake Telegram refused (bar 0); ghosts: samples (every 0.2 s, throughout)
  in which `accounts list` showed running an account with no live client (bar 0);
- events lost: fleet events the old primary had and the promoted replica never got (read from the stream by an
  observer on the old primary, against the new primary's stream), and whether the database still came to record
  every account running (the scan repairs what the lost events would have said): it must.

    .venv/bin/python bench/failover.py [--accounts 200] [--heartbeat 1] [--scan 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys
from scripts.embedded_redis import EmbeddedRedis
from scripts.embedded_sentinel import Address, EmbeddedSentinel
from tests.support.chaos import ChaosFleet, Sampler
from tests.support.failover import Moves, kill_primary, start_fleet
from tests.support.stack import Stack, wait_until

TIMEOUT = 180.0
MOVED = 20
DOWN_AFTER_MS = 1000
START_COOLDOWN = 15.0  # run_backend.py's AccountSync cooldown: max(3 x scan, 15 s)
FENCE_LINE = "no contact with Redis for"  # what worker.account_manager logs when it fences


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class StreamObserver:
    """Reads the fleet's event stream on one node (the primary) as it grows, keeping every entry id it saw."""

    address: Address
    seen: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StreamObserver:
        threading.Thread(target=self._run, name="stream-observer", daemon=True).start()
        return self

    def _run(self) -> None:
        client = Redis(host=self.address[0], port=self.address[1], decode_responses=True, socket_timeout=2)
        last = "$"
        with contextlib.suppress(RedisError, OSError):
            while not self._stop.is_set():
                for _stream, entries in client.xread({keys.EVENTS_STREAM: last}, block=100) or []:
                    for entry_id, _fields in entries:
                        self.seen.append(entry_id)
                        last = entry_id

    def stop(self) -> None:
        self._stop.set()

    def lost_on(self, promoted: Redis, killed_at_ms: int) -> int:
        """Entries seen before the kill that the promoted node does not have. Replication keeps the stream's
        order, so everything up to the newest pre-kill entry it has (or the newest it trimmed) did arrive."""
        info = promoted.xinfo_stream(keys.EVENTS_STREAM)
        arrived = [_id(str(info.get("max-deleted-entry-id", "0-0")))]
        newest = promoted.xrevrange(keys.EVENTS_STREAM, max=str(killed_at_ms), count=1)
        if newest:
            arrived.append(_id(newest[0][0]))
        horizon = max(arrived)
        return sum(1 for entry in self.seen if horizon < _id(entry) <= (killed_at_ms, 2**63))


@dataclass
class Row:
    timing: str
    variant: str
    promoted: float
    recovery: float
    recorded: float
    bar: float
    twice: int
    ghosts: int
    lost: int
    fenced: int

    @property
    def passed(self) -> bool:
        return self.recovery <= self.bar and self.twice == 0 and self.ghosts == 0


def one_kill(
    fleet: ChaosFleet, cluster: EmbeddedSentinel, sampler: Sampler, timing: str, moving: list[int], bar_extra: float
) -> Row:
    # A failover is a rare event: the fleet has been steady for a while before it. (The backend does not start an
    # account again within its start cooldown, and the fleet's start and the last failover's scans sent starts.)
    time.sleep(max(3 * fleet.scan_interval, START_COOLDOWN) + 1)
    twice_before, ghosts_before = len(fleet.violations()), len(sampler.violations)
    fences_before = fences(fleet)
    host, port = cluster.master_address()
    observer = StreamObserver((host, port)).start()
    moves = Moves(fleet, moving, "w2").start() if moving else None
    if moves is not None:
        moves.wait_done(2)
    killed_at_ms = int(time.time() * 1000)
    failover = kill_primary(cluster)
    observer.stop()
    wait_until(fleet.everything_running, TIMEOUT, interval=0.05, message="every account running again")
    recovery = time.monotonic() - failover.killed_at
    wait_until(lambda: fleet.recorded_running() == fleet.all_ids, TIMEOUT, interval=0.1, message="recorded running")
    recorded = time.monotonic() - failover.killed_at
    new_host, new_port = cluster.master_address()
    with Redis(host=new_host, port=new_port, decode_responses=True) as promoted:
        lost = observer.lost_on(promoted, killed_at_ms)
    if moves is not None:
        moves.join()
    for ghost in sampler.violations[ghosts_before:][:5]:
        print(f"    {timing}, kill at {failover.killed_at:.2f}: {ghost}")
    cluster.revive((host, port), timeout=60)  # back as a replica: the next kill has one to promote
    return Row(
        timing,
        "moves in flight" if moving else "nothing in flight",
        failover.promoted_after,
        recovery,
        recorded,
        failover.promoted_after + bar_extra,
        len(fleet.violations()) - twice_before,
        len(sampler.violations) - ghosts_before,
        lost,
        fences(fleet) - fences_before,
    )


def fences(fleet: ChaosFleet) -> int:
    """How many times the workers have fenced themselves so far (stopped every client, cut off from Redis)."""
    return sum(fleet.stack.log_of(process).count(FENCE_LINE) for process in fleet.processes.values())


def run_timing(args: argparse.Namespace, timing: str, offline_after: float, workdir: Path) -> list[Row]:
    heartbeat, scan = args.heartbeat, args.scan
    rows: list[Row] = []
    with contextlib.ExitStack() as stack_:
        for folder in ("sentinel", "telegram-redis", "stack"):
            (workdir / folder).mkdir(parents=True)
        cluster = stack_.enter_context(
            EmbeddedSentinel(replicas=1, workdir=str(workdir / "sentinel"), down_after_ms=DOWN_AFTER_MS)
        )
        telegram = stack_.enter_context(EmbeddedRedis(workdir=str(workdir / "telegram-redis")))
        guard_log = workdir / "netguard.log"
        guard_log.touch()
        stack = Stack(workdir / "stack", cluster.redis_url(), f"sqlite:///{workdir / 'fleet.db'}", guard_log)
        stack.env.update(
            HEARTBEAT_INTERVAL=str(heartbeat),
            WORKER_OFFLINE_AFTER=str(offline_after),
            WORKER_CONNECTS_PER_SECOND=str(args.connects_per_second),
        )
        stack_.callback(stack.shutdown)
        started = time.monotonic()
        fleet = start_fleet(stack, cluster, telegram.url, per_worker=args.accounts // 2, scan_interval=scan)
        stack_.callback(fleet.close)
        print(
            f"  {timing}: {len(fleet.all_ids)} accounts, heartbeat {heartbeat:g} s, scan {scan:g} s, offline after "
            f"{offline_after:g} s (fence {offline_after / 2:g} s); fleet up in {time.monotonic() - started:.1f} s"
        )
        sampler = Sampler(fleet).start()
        stack_.callback(sampler.stop)
        w1 = sorted(i for p, i in fleet.ids_by_phone.items() if p.startswith("+1555000"))
        for round_ in range(args.rounds):
            rows.append(one_kill(fleet, cluster, sampler, timing, [], 2 * heartbeat + scan))
            batch = w1[round_ * MOVED : (round_ + 1) * MOVED]
            rows.append(one_kill(fleet, cluster, sampler, timing, batch, 2 * heartbeat + scan))
        print(f"    sampler: {sampler.samples} samples")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--connects-per-second", type=float, default=10000.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--scan", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--patient-offline-after", type=float, default=16.0)
    parser.add_argument("--fencing-offline-after", type=float, default=3.0)
    parser.add_argument("--timings", default="patient,fencing", help="which of patient,fencing to run")
    parser.add_argument("--keep", metavar="DIR", help="keep the processes' logs under DIR (else a temp dir)")
    args = parser.parse_args()
    print(f"failover benchmark: kill -9 of the Redis primary (Sentinel down-after {DOWN_AFTER_MS} ms), 2 workers")
    rows: list[Row] = []
    offline_after = {"patient": args.patient_offline_after, "fencing": args.fencing_offline_after}
    with tempfile.TemporaryDirectory() as tmp:
        for timing in args.timings.split(","):
            rows += run_timing(args, timing, offline_after[timing], Path(args.keep or tmp) / timing)
    print(
        f"  {'timing':<8} {'kill with':<18} {'promoted':>8} {'recovery':>8} {'bar':>6} {'recorded':>8} "
        f"{'twice':>5} {'ghosts':>6} {'lost':>4} {'fenced':>6}"
    )
    ok = True
    for row in rows:
        ok &= row.passed
        print(
            f"  {row.timing:<8} {row.variant:<18} {row.promoted:7.2f}s {row.recovery:7.2f}s {row.bar:5.1f}s "
            f"{row.recorded:7.2f}s {row.twice:5d} {row.ghosts:6d} {row.lost:4d} {row.fenced:6d}  "
            f"{'PASS' if row.passed else 'FAIL'}"
        )
    print("  recorded: until the database records every account running again (lost events repaired by the scan);")
    print("  fenced: workers that stopped all their clients while Redis was away (and resumed them)")
    print(f"  -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
