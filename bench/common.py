"""Shared by the benchmarks: an embedded Redis, a temp database, and real worker processes on fake Telegram."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis

from celery_app import presence

ROOT = Path(__file__).resolve().parent.parent

SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnop"
API_HASH = "0123456789abcdef0123456789abcdef"


def worker_env(redis_url: str, name: str, threads: int, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "WORKER_NAME": name,
        "WORKER_THREADS": str(threads),
        "HEARTBEAT_INTERVAL": "1",
        "WORKER_OFFLINE_AFTER": "10",
        "LOG_LEVEL": "WARNING",
        "FLEET_CLIENT_FACTORY": "tests.support.fake_telegram:factory",
        # The benchmarks time the fleet, not its pacing of Telegram connects (WORKER_CONNECTS_PER_SECOND).
        "WORKER_CONNECTS_PER_SECOND": "10000",
        "PYTHONPATH": str(ROOT / "tests" / "netguard"),
        "FLEET_NETGUARD": "1",
        **extra,
    }


def start_worker(redis: Redis, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"worker-{env['WORKER_NAME']}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_worker.py")], cwd=workdir, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snapshot = presence.read_heartbeats(redis, [env["WORKER_NAME"]])
        if env["WORKER_NAME"] in snapshot.beats:
            time.sleep(0.5)  # let Celery finish starting its consumer
            return process
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}: see {log.name}")
        time.sleep(0.05)
    raise RuntimeError("worker did not come online")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.2f} ms   p95 {percentile(values, 0.95) * 1000:6.2f} ms"
