"""Benchmark: how long an operator waits for `run_cli.py`, the way scripts call it (a new process each time).

Starts its own Redis on a free loopback port and a SQLite file in a temp dir holding a few workers (some of
them heartbeating), then times `run_cli.py --version`, `run_cli.py --help` and `run_cli.py list` as separate
processes, one after another, and reports the wall time (median, p95) and the CPU time (median) of each.
Bars, on an idle 2-core machine: `--version` and `--help` <= 0.3 s, `list` <= 0.5 s (median wall). For the
issue's scenario it also runs `list` in concurrent loops (no bar: the machine is shared by then).

    .venv/bin/python bench/cli.py [--runs 20] [--workers 5] [--loops 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.control_plane import ControlPlane
from bench.common import ROOT, percentile
from celery_app import presence
from celery_app.presence import WorkerInfo
from scripts.embedded_redis import EmbeddedRedis

OFFLINE_AFTER = 60.0
BARS = {"--version": 0.3, "--help": 0.3, "list": 0.5}


def populate(plane: ControlPlane, workers: int) -> None:
    """`workers` pre-registered workers in the database; every other one heartbeating in Redis."""
    now = presence.server_time(plane.redis)
    for index in range(workers):
        name = f"bench-{index}"
        plane.fleet.add_worker(name, f"10.0.0.{index + 1}", "bench")
        if index % 2 == 0:
            info = WorkerInfo(name, f"10.0.0.{index + 1}", "host", 1000 + index, "0.1.0", now - 60, name)
            presence.register(plane.redis, info, OFFLINE_AFTER)


def run_cli(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """One call as a new process: (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_cli.py"), *args], env=env, cwd=cwd, capture_output=True, timeout=60
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"run_cli.py {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def concurrent_loops(loops: int, calls: int, env: dict[str, str], cwd: str) -> list[float]:
    """`loops` shell-like loops calling `list` `calls` times each, all at once: every call's wall time."""
    walls: list[float] = []
    lock = threading.Lock()

    def loop() -> None:
        for _ in range(calls):
            started = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "run_cli.py"), "list"], env=env, cwd=cwd, capture_output=True)
            with lock:
                walls.append(time.perf_counter() - started)

    threads = [threading.Thread(target=loop) for _ in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="calls timed per command")
    parser.add_argument("--workers", type=int, default=5, help="workers in the database")
    parser.add_argument("--loops", type=int, default=5, help="concurrent `list` loops (0: skip that part)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(workdir=tmp) as server:
        database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        plane = ControlPlane(server.url, database_url, OFFLINE_AFTER)
        populate(plane, args.workers)
        plane.close()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "REDIS_URL": server.url,
            "DATABASE_URL": database_url,
            "FLEET_ENV_FILE": str(Path(tmp) / "no.env"),  # the project's .env plays no part
        }
        results: dict[str, tuple[list[float], list[float]]] = {}
        for command in BARS:
            for _ in range(2):  # warm the page cache and the bytecode
                run_cli([command], env, tmp)
            timings = [run_cli([command], env, tmp) for _ in range(args.runs)]
            results[command] = ([wall for wall, _ in timings], [cpu for _, cpu in timings])
        loops = concurrent_loops(args.loops, max(1, args.runs // 2), env, tmp) if args.loops else []
    print(f"CLI start-up benchmark: {args.runs} calls each, a new process per call, {args.workers} workers")
    passed = True
    for command, bar in BARS.items():
        walls, cpus = results[command]
        median = statistics.median(walls)
        ok = median <= bar
        passed &= ok
        print(
            f"  run_cli.py {command:<9}  wall median {median * 1000:4.0f} ms  p95 {percentile(walls, 0.95) * 1000:4.0f}"
            f" ms   CPU median {statistics.median(cpus) * 1000:4.0f} ms   bar: median <= {bar * 1000:.0f} ms -> "
            f"{'PASS' if ok else 'FAIL'}"
        )
    if loops:
        print(
            f"  {args.loops} concurrent `list` loops: wall median {statistics.median(loops) * 1000:4.0f} ms"
            f"  p95 {percentile(loops, 0.95) * 1000:4.0f} ms per call (no bar)"
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
