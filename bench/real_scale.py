"""Benchmark: N real Telethon clients on ONE worker process, against the loopback MTProto server.

Real parts throughout: Redis, a SQLite database, the backend (`run_backend.py`), one `run_worker.py` with the
real Telethon client (no fake factory) reaching the loopback MTProto server through TG_MTPROTO_DC /
TG_MTPROTO_PUBKEY, and the CLI. The server runs in a process of its own (tests/support/mtproto_server/
process.py) with N accounts whose auth keys were made beforehand (no key exchange per client). The accounts
are imported into the database with sessions for that server; `run_cli.py accounts start-all` starts them.
The `autoreply` plugin is enabled on --plugin-accounts of them (default a tenth); the others run without
updates.

Measured: seconds until all N run (from start-all; the pacing floor is N / WORKER_CONNECTS_PER_SECOND), the
worker's RSS before and after (per client), the worker's CPU while the clients sit idle for --idle seconds
(pings only), and again for --busy seconds while 1 message a second arrives (round robin) for the accounts
with the plugin (each must reach it: its answer must reach the sender), the largest gap between two
heartbeats as Redis saw them, the CLI's `list` and `accounts list` with the clients idle against their usual
time (the same data, the worker paused with SIGSTOP meanwhile), and the server's own CPU and connections (it
must not be what is measured; a connection accepted beyond N is a client that had to reconnect).

Bars (at N = 10,000): all running <= 1.5x the pacing floor, RSS <= 1 GB, idle CPU <= 30 % of a core, no
heartbeat gap over HEARTBEAT_INTERVAL + 1 s, the CLI within 1.5x (+0.5 s) of its usual time.

To see how a worker degrades past its capacity: more accounts, or less CPU for the worker (--taskset CPUS,
or --cpu-limit FRACTION of a core through a cgroup, as root).

    .venv/bin/python bench/real_scale.py [--accounts 10000] [--rate 100] [--idle 60] [--busy 60]
        [--threads 4] [--plugin-accounts N] [--heartbeat 15] [--taskset 0] [--cpu-limit 0.5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from bench.common import API_HASH, ROOT, SECRET_KEY, rss_mb, stop, worker_env
from celery_app import keys
from common.crypto import SecretBox
from common.validation import mask_phone
from sandbox.mtproto.process import ServerProcess, raise_fd_limit
from scripts.embedded_redis import EmbeddedRedis
from tests.support.stack import wait_until

WORKER = "w1"
SENDER = "+15559990000"
HEARTBEAT_SLACK = 1.0
BAR_START_FACTOR = 1.5
BAR_RSS_MB = 1024.0
BAR_IDLE_CPU = 30.0
CLI_FACTOR, CLI_SLACK = 1.5, 0.5
CGROUP = Path("/sys/fs/cgroup/cpu/fleet-real-scale")  # cgroup v1 (--cpu-limit)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields_after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_after_name[11]) + int(fields_after_name[12])) / os.sysconf("SC_CLK_TCK")


def phone_of(index: int) -> str:
    return f"+1555{index:07d}"


@dataclass
class Heartbeats:
    """Polls the worker's heartbeat time in Redis (the gaps between successive beats, by phase) and, every few
    seconds, how many accounts read running (the fewest after the start, by phase)."""

    redis: Redis
    ids: list[int]
    phase: str = "start"
    beats: list[tuple[str, float]] = field(default_factory=list)
    fewest: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last, counted = None, 0.0
        while not self._stop.wait(0.05):
            score = self.redis.zscore(keys.HEARTBEATS, WORKER)
            if score is not None and score != last:
                self.beats.append((self.phase, score))
                last = score
            if self.phase != "start" and time.monotonic() - counted > 5.0:
                counted = time.monotonic()
                running = count_running(self.redis, self.ids)
                self.fewest[self.phase] = min(running, self.fewest.get(self.phase, running))

    def start(self) -> Heartbeats:
        threading.Thread(target=self.run, name="heartbeats", daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()

    def max_gap(self, phase: str | None = None) -> float:
        gaps = [b[1] - a[1] for a, b in zip(self.beats, self.beats[1:], strict=False) if phase in (None, b[0])]
        return max(gaps, default=0.0)


def limit_cpu(pid: int, fraction: float) -> None:
    """Put the process (all its threads) in a cgroup allowed `fraction` of one core (cgroup v1, as root)."""
    CGROUP.mkdir(exist_ok=True)
    period = int((CGROUP / "cpu.cfs_period_us").read_text())
    (CGROUP / "cpu.cfs_quota_us").write_text(str(int(period * fraction)))
    (CGROUP / "cgroup.procs").write_text(str(pid))


@dataclass
class Stack:
    workdir: Path
    redis_url: str
    database_url: str
    heartbeat: float
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """Every process's environment: the same Redis, database and timing (WORKER_OFFLINE_AFTER 4 beats)."""
        return {
            **worker_env(self.redis_url, WORKER, 4),
            "DATABASE_URL": self.database_url,
            "HEARTBEAT_INTERVAL": f"{self.heartbeat:g}",
            "WORKER_OFFLINE_AFTER": f"{self.heartbeat * 4:g}",
            **extra,
        }

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def cli(self, *args: str, timeout: float = 600) -> tuple[float, str]:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(ROOT / "run_cli.py"), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        took = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"run_cli.py {' '.join(args)}: exit {result.returncode}: {result.stderr[-2000:]}")
        return took, result.stdout


def import_accounts(database_url: str, redis_url: str, sessions: list[str], plugin_accounts: int) -> list[int]:
    """N accounts on worker w1 (stopped), with sessions for the server; `autoreply` on the first `plugin_accounts`."""
    from sqlalchemy import select

    from backend.control_plane import ControlPlane
    from database import workers as workers_db
    from database.engine import open_database
    from database.models import Account

    engine, factory = open_database(database_url)
    box = SecretBox(SECRET_KEY)
    api_hash_enc = box.encrypt(API_HASH)
    with factory.begin() as session:
        worker_id = workers_db.add_worker(session, WORKER, "bench", "bench").id
        session.add_all(
            Account(
                phone_enc=box.encrypt(phone_of(index)),
                phone_lookup=box.lookup(phone_of(index)),
                phone_masked=mask_phone(phone_of(index)),
                api_id=12345,
                api_hash_enc=api_hash_enc,
                session_enc=box.encrypt(session_string),
                worker_id=worker_id,
                desired_state="stopped",
                status="stopped",
                status_detail="",
            )
            for index, session_string in enumerate(sessions)
        )
    with factory() as session:
        ids = list(session.scalars(select(Account.id).order_by(Account.id)))
    if plugin_accounts:
        plane = ControlPlane(redis_url, database_url, 10.0, secret_key=lambda: SECRET_KEY)
        plane.plugins.enable("autoreply", ids[:plugin_accounts], {"text": "away", "cooldown_minutes": 0}, "bench")
    engine.dispose()
    return ids


def count_running(redis: Redis, ids: list[int]) -> int:
    pipe = redis.pipeline(transaction=False)
    for account_id in ids:
        pipe.hget(keys.account_state(WORKER, account_id), "status")
    return sum(1 for status in pipe.execute() if status == "running")


CLI_COMMANDS = ("list", "accounts list")


def cli_times(
    stack: Stack, worker: subprocess.Popen[bytes], pause_at_most: float, rounds: int = 2
) -> tuple[dict[str, float], ...]:
    """The median answer times of `list` and `accounts list`: with the clients idle, and their usual time (the
    same data, the worker paused by SIGSTOP meanwhile), in turns. A command slower than `pause_at_most` (half
    the fence) is not timed paused: its usual time is then its idle one."""
    idle: dict[str, list[float]] = {command: [] for command in CLI_COMMANDS}
    usual: dict[str, list[float]] = {command: [] for command in CLI_COMMANDS}
    for _ in range(rounds):
        for command in CLI_COMMANDS:
            took = stack.cli(*command.split())[0]
            idle[command].append(took)
            if took > pause_at_most:
                usual[command].append(took)
                continue
            worker.send_signal(signal.SIGSTOP)
            try:
                usual[command].append(stack.cli(*command.split())[0])
            finally:
                worker.send_signal(signal.SIGCONT)
            time.sleep(2.0)
    return tuple({c: statistics.median(times[c]) for c in CLI_COMMANDS} for times in (idle, usual))


@dataclass
class CpuMeter:
    """CPU of processes over a stretch of wall time, in % of one core."""

    pids: dict[str, int]
    server: ServerProcess
    started: float = 0.0
    at_start: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.at_start = self._now()

    def _now(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"server": self.server.stats()["cpu"]}

    def percent(self) -> dict[str, float]:
        wall = max(time.monotonic() - self.started, 1e-3)
        return {name: 100.0 * (cpu - self.at_start[name]) / wall for name, cpu in self._now().items()}


def answers(server: ServerProcess) -> list[float]:
    """The plugin's answers the sender got: for each, the seconds from the message it answers."""
    sender = server.call("account", SENDER)
    sent: dict[int, list[float]] = {}
    for message in sender.messages:
        if message.out:
            sent.setdefault(message.peer_id, []).append(message.date)
    delays = []
    for message in sender.messages:
        if not message.out and sent.get(message.peer_id):
            delays.append(message.date - sent[message.peer_id].pop(0))
    return delays


def run(args: argparse.Namespace, workdir: Path) -> int:
    limit = raise_fd_limit()
    if limit < args.accounts + 200:
        print(f"open-files limit {limit} is too low for {args.accounts} clients", file=sys.stderr)
        return 2
    n, plugin_accounts = args.accounts, min(args.plugin_accounts, args.accounts)
    redis_server = EmbeddedRedis(workdir=str(workdir)).start()
    server = ServerProcess(workdir / "mtproto.log").start()
    stack = Stack(workdir, redis_server.url, f"sqlite:///{workdir / 'fleet.db'}", args.heartbeat)
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    heartbeats = Heartbeats(Redis.from_url(redis_server.url, decode_responses=True), [])
    try:
        started = time.perf_counter()
        sessions = server.add_accounts([phone_of(index) for index in range(n)])
        server.add_accounts([SENDER], first_name="Sender")
        ids = heartbeats.ids = import_accounts(stack.database_url, redis_server.url, sessions, plugin_accounts)
        del sessions
        print(f"set-up: {n} accounts on the server and in the database in {time.perf_counter() - started:.1f} s")
        env = stack.env(
            WORKER_THREADS=str(args.threads),
            WORKER_CONNECTS_PER_SECOND=f"{args.rate:g}",
            WORKER_MAX_ACCOUNTS=str(max(n, 1)),  # what is measured here is what it carries
            TG_MTPROTO_DC=server.dc_setting,
            TG_MTPROTO_PUBKEY=server.write_public_key(workdir / "mtproto.pub"),
        )
        del env["FLEET_CLIENT_FACTORY"]  # real Telethon
        prefix = ["taskset", "-c", args.taskset] if args.taskset else []
        worker = stack.spawn("worker", [*prefix, sys.executable, str(ROOT / "run_worker.py")], env)
        if args.cpu_limit:
            limit_cpu(worker.pid, args.cpu_limit)
        backend = stack.spawn("backend", [sys.executable, str(ROOT / "run_backend.py")], env)
        wait_until(lambda: redis.zscore(keys.HEARTBEATS, WORKER), 60, message="worker online")
        heartbeats.start()
        time.sleep(2.0)
        rss_before = rss_mb(worker.pid)

        floor = n / args.rate
        meter = CpuMeter({"worker": worker.pid}, server)
        clock = time.perf_counter()
        start_all = threading.Thread(
            target=stack.cli, args=("accounts", "start-all", "--worker", WORKER, "--yes"), daemon=True
        )
        start_all.start()  # the CLI waits for the worker's answers, batch by batch
        answered = None
        while (running := count_running(redis, ids)) < n:
            if answered is None and not start_all.is_alive():
                answered = time.perf_counter() - clock
            if time.perf_counter() - clock > max(600.0, floor * 4) or worker.poll() is not None:
                break
            time.sleep(1.0)
        all_running = time.perf_counter() - clock
        starting = meter.percent()
        if answered is None and not start_all.is_alive():
            answered = all_running
        said = f"answered in {answered:.1f} s" if answered is not None else "had not answered yet"
        print(f"start-all: the CLI {said}; {running} of {n} running after {all_running:.1f} s")
        if running < n:  # the rest is measured all the same: how a worker past its capacity fares
            print(f"FAIL: only {running} of {n} accounts ran within {all_running:.0f} s")
        time.sleep(5.0)
        rss_after = rss_mb(worker.pid)

        heartbeats.phase = "idle"
        meter = CpuMeter({"worker": worker.pid, "backend": backend.pid}, server)
        time.sleep(args.idle)
        idle = meter.percent()

        heartbeats.phase = "busy"
        sent, pushed = 0, 0
        meter = CpuMeter({"worker": worker.pid}, server)
        while sent < args.busy and plugin_accounts:
            time.sleep(max(0.0, meter.started + sent - time.monotonic()))
            pushed += server.deliver(phone_of(sent % plugin_accounts), f"bench message {sent}", sender=SENDER) > 0
            sent += 1
        busy = meter.percent()
        time.sleep(3.0)
        delays = answers(server)
        still_running = count_running(redis, ids)
        heartbeats.close()
        during, usual = cli_times(stack, worker, pause_at_most=args.heartbeat)
        reconnects = server.stats()["accepted"] - n
        log = (workdir / "worker.log").read_text(errors="replace").splitlines()
        warnings = sum(1 for line in log if " WARNING " in line or " ERROR " in line or " CRITICAL " in line)
        fenced = sum(1 for line in log if "stopping all" in line)

        interval = args.heartbeat
        gap = heartbeats.max_gap()
        throttled = (f", taskset {args.taskset}" if args.taskset else "") + (
            f", CPU limited to {args.cpu_limit:g} core" if args.cpu_limit else ""
        )
        print(
            f"real-scale benchmark: {n} real Telethon clients on one worker (WORKER_THREADS={args.threads}, "
            f"WORKER_CONNECTS_PER_SECOND={args.rate:g}, HEARTBEAT_INTERVAL={interval:g}, "
            f"plugin on {plugin_accounts}{throttled})"
        )
        print(
            f"  all running after      {all_running:7.1f} s   (pacing floor {floor:.1f} s, x{all_running / floor:.2f})"
        )
        per_client = (rss_after - rss_before) * 1024 / n
        print(f"  worker RSS             {rss_before:7.1f} -> {rss_after:.1f} MB   ({per_client:.1f} KB a client)")
        print(f"  worker CPU starting    {starting['worker']:7.1f} %   (server {starting['server']:.1f} %)")
        print(
            f"  worker CPU idle        {idle['worker']:7.1f} %   (server {idle['server']:.1f} %, backend "
            f"{idle['backend']:.1f} %), {args.idle:g} s"
        )
        print(
            f"  worker CPU 1 msg/s     {busy['worker']:7.1f} %   (server {busy['server']:.1f} %), "
            f"{sent} sent, {pushed} pushed, {len(delays)} answered by the plugin"
            + (f" (median {statistics.median(delays):.2f} s, max {max(delays):.2f} s)" if delays else "")
        )
        print(
            f"  heartbeat max gap      {gap:7.2f} s   (start {heartbeats.max_gap('start'):.2f}, idle "
            f"{heartbeats.max_gap('idle'):.2f}, busy {heartbeats.max_gap('busy'):.2f}; {len(heartbeats.beats)} beats)"
        )
        for command in CLI_COMMANDS:
            print(f"  CLI {command:<18} {during[command]:7.2f} s with the clients idle, {usual[command]:.2f} s usual")
        fewest = ", ".join(f"{phase} {count}" for phase, count in heartbeats.fewest.items())
        print(
            f"  running: fewest seen {fewest}, at the end {still_running} of {n}; reconnections {reconnects}; "
            f"fence {fenced}; warnings in the worker's log {warnings}"
        )
        checks = {
            f"all running <= {BAR_START_FACTOR:g}x floor": all_running <= BAR_START_FACTOR * floor,
            f"RSS <= {BAR_RSS_MB:g} MB": rss_after <= BAR_RSS_MB,
            f"idle CPU <= {BAR_IDLE_CPU:g} %": idle["worker"] <= BAR_IDLE_CPU,
            f"heartbeat gaps <= {interval + HEARTBEAT_SLACK:g} s": gap <= interval + HEARTBEAT_SLACK,
            "CLI in its usual time": all(
                during[c] <= max(usual[c] * CLI_FACTOR, usual[c] + CLI_SLACK) for c in CLI_COMMANDS
            ),
            "every message reached the plugin": len(delays) >= sent,
            "all ran throughout": still_running == n and min(heartbeats.fewest.values(), default=n) == n,
        }
        for name, ok in checks.items():
            print(f"  bar: {name:<36} {'PASS' if ok else 'FAIL'}")
        return 0 if all(checks.values()) else 1
    finally:
        heartbeats.close()
        for process in reversed(stack.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
            stop(process)
        server.stop()
        redis_server.stop()
        if args.cpu_limit and CGROUP.exists():
            CGROUP.rmdir()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="WORKER_CONNECTS_PER_SECOND")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds the clients sit idle")
    parser.add_argument("--busy", type=int, default=60, help="seconds of 1 message a second")
    parser.add_argument("--threads", type=int, default=4, help="WORKER_THREADS")
    parser.add_argument("--plugin-accounts", type=int, default=-1, help="accounts with the autoreply plugin")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="HEARTBEAT_INTERVAL")
    parser.add_argument("--taskset", default="", help="CPUs the worker may use (taskset -c), e.g. 0")
    parser.add_argument("--cpu-limit", type=float, default=0.0, help="cores the worker may use (a cgroup quota)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if args.plugin_accounts < 0:
        args.plugin_accounts = max(1, args.accounts // 10)
    if args.keep:
        workdir = Path(tempfile.mkdtemp(prefix="real-scale-"))
        print(f"work directory: {workdir}")
        return run(args, workdir)
    with tempfile.TemporaryDirectory(prefix="real-scale-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
