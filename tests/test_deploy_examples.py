"""The multi-host example in `deploy/` is one that works: its units start entry points that exist and restart by
the exit-code conventions, its env files hold only settings the configuration knows (and values it accepts),
the hosts agree with each other, and its Redis and Sentinel files start real servers that find each other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values
from redis import Redis
from redis.exceptions import RedisError

from common.redis_target import SentinelTarget, parse_target
from config import EXIT_CONFIG, EXIT_UNAVAILABLE, load_backend_settings, load_worker_settings
from config.environment import _readers
from config.settings import load_board_settings, load_bot_settings, load_cli_settings
from scripts.embedded_redis import find_redis_server, free_port
from tests.support.stack import ROOT
from worker.main import EXIT_NAME_IN_USE

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_FILES = {"control": DEPLOY / "env" / "control.env", "worker": DEPLOY / "env" / "worker.env"}
ENTRY_POINTS = {"run.py", "run_backend.py", "run_board.py", "run_worker.py"}
# What an operator must fill in (empty in the examples, so nothing starts on a value copied from them).
TO_FILL = {
    "SECRET_KEY": "s" * 40,
    "TG_BOT_TOKEN": "123456:" + "A" * 30,
    "ADMIN_IDS": "1",
    "BOARD_BOT_TOKEN": "654321:" + "B" * 30,
}
REDIS_PASSWORD_LINE = re.compile(r"^requirepass (\S+)$", re.MULTILINE)


def unit_directives(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> values, in order (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def known_settings() -> set[str]:
    readers = _readers()
    return {name for model in vars(readers).values() for name in model.model_fields}


def redis_password() -> str:
    (password,) = set(REDIS_PASSWORD_LINE.findall((DEPLOY / "redis" / "redis.conf").read_text()))
    return password


# --- systemd units


def test_the_units_are_the_four_roles() -> None:
    assert [u.name for u in UNITS] == [
        "fleet-backend@.service",
        "fleet-board.service",
        "fleet-bot.service",
        "fleet-worker.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_unit_starts_an_entry_point_and_restarts_by_the_exit_codes(unit: Path) -> None:
    directives = unit_directives(unit)
    (command,) = directives["Service.ExecStart"]
    python, script, *args = command.split()
    assert python == "/opt/fleet/.venv/bin/python" and directives["Service.WorkingDirectory"] == ["/opt/fleet"]
    assert script in ENTRY_POINTS and (ROOT / script).is_file()
    if script == "run_backend.py":
        from run_backend import ScanInterval

        assert [ScanInterval().convert(arg, None, None) for arg in args] == [10.0]
    else:
        assert args == []
    version = subprocess.run([sys.executable, str(ROOT / script), "--version"], capture_output=True, timeout=60)
    assert version.returncode == 0, version.stderr
    prevented = {int(code) for code in " ".join(directives["Service.RestartPreventExitStatus"]).split()}
    assert EXIT_CONFIG in prevented and EXIT_UNAVAILABLE not in prevented  # Redis or the DB may come back
    assert (EXIT_NAME_IN_USE in prevented) == (script == "run_worker.py")
    assert directives["Service.Restart"] == ["on-failure"] and directives["Service.User"] == ["fleet"]
    if script == "run_worker.py":  # a worker host has no database, and its Redis replica is not what it talks to
        assert directives["Unit.After"] == ["network-online.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    root = tmp_path / "opt-fleet"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").symlink_to(sys.executable)
    for unit in UNITS:
        text = unit.read_text().replace("/opt/fleet", str(root))
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# --- env files


@pytest.mark.parametrize("role", sorted(ENV_FILES))
def test_an_env_file_holds_only_settings_the_config_knows(role: str) -> None:
    values = dotenv_values(ENV_FILES[role])
    unknown = set(values) - known_settings()
    assert not unknown, f"{ENV_FILES[role].name} sets what no process reads: {sorted(unknown)}"
    assert "FLEET_CLIENT_FACTORY" not in values  # a testing hook, never a production setting
    blank = {name for name, value in values.items() if not value}
    assert blank <= set(TO_FILL) | {"BOARD_WEBAPP_URL"}, f"left empty with no reason: {sorted(blank - set(TO_FILL))}"


def _load(role: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The role's env file as the processes read it, with what the operator fills in filled in."""
    for name in known_settings():
        monkeypatch.delenv(name, raising=False)
    values = {name: value or TO_FILL.get(name, "") for name, value in dotenv_values(ENV_FILES[role]).items()}
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    return {name: str(value) for name, value in values.items()}


def test_the_control_host_runs_backend_bot_board_and_cli_on_postgresql_through_sentinel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _load("control", monkeypatch)
    backend = load_backend_settings()
    assert backend.database_url.startswith("postgresql")
    for settings in (load_bot_settings(), load_board_settings(), load_cli_settings()):
        assert settings.database_url == backend.database_url and settings.redis_url == backend.redis_url
    _assert_through_the_sentinels(backend.redis_url)


def test_a_worker_host_runs_a_worker_through_sentinel_with_no_database_or_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _load("worker", monkeypatch)
    assert not {"DATABASE_URL", "TG_BOT_TOKEN", "BOARD_BOT_TOKEN", "ADMIN_IDS"} & set(values)
    worker = load_worker_settings()
    assert worker.worker_name and worker.worker_address
    _assert_through_the_sentinels(worker.redis_url)


def _assert_through_the_sentinels(target_text: str) -> None:
    target = parse_target(target_text)
    assert isinstance(target, SentinelTarget)
    sentinel_conf = (DEPLOY / "redis" / "sentinel.conf").read_text()
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", sentinel_conf, re.MULTILINE)
    port = re.search(r"^port (\d+)$", sentinel_conf, re.MULTILINE)
    assert monitor and port
    assert target.master_name == monitor.group(1) and target.password == redis_password()
    assert len(target.sentinels) == 3 and len({host for host, _ in target.sentinels}) == 3  # three hosts
    assert {p for _, p in target.sentinels} == {int(port.group(1))}
    assert (monitor.group(2), int(port.group(1))) in target.sentinels  # one beside the primary


def test_the_hosts_agree_on_timing_and_the_failover_ends_before_the_fence() -> None:
    control, worker = (dotenv_values(ENV_FILES[role]) for role in ("control", "worker"))
    for name in ("HEARTBEAT_INTERVAL", "WORKER_OFFLINE_AFTER", "REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_URL"):
        assert control.get(name) == worker.get(name), name
    down_after = re.search(
        r"^sentinel down-after-milliseconds \S+ (\d+)$", (DEPLOY / "redis" / "sentinel.conf").read_text(), re.MULTILINE
    )
    # Detection within a quarter of WORKER_OFFLINE_AFTER leaves the election and the promotion another quarter
    # before the workers' fence (at half of it): a failover that goes as planned stops no account.
    assert down_after and int(down_after.group(1)) / 1000 < float(str(worker["WORKER_OFFLINE_AFTER"])) / 4


# --- Redis and Sentinel files: real servers started from them (addresses, ports and paths overridden)


class _Servers:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, conf: Path, *args: str) -> int:
        port = free_port()
        directory = self.workdir / name
        directory.mkdir()
        overrides = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        overrides += ["--logfile", str(self.workdir / f"{name}.log"), "--daemonize", "no"]
        with open(self.workdir / f"{name}.out.log", "wb") as output:  # what it says before its log file opens
            command = [find_redis_server(), str(conf), *args, *overrides]
            self.processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT))
        return port

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[_Servers]:
    started = _Servers(tmp_path)
    yield started
    started.stop()


def _until(probe, what: str, servers: _Servers, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in servers.processes:
            if process.poll() is not None:
                logs = {p.name: p.read_text()[-500:] for p in servers.workdir.glob("*.log")}
                raise AssertionError(f"a redis-server exited ({process.returncode}) waiting for {what}: {logs}")
        try:
            found = probe()
        except RedisError:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_redis_files_make_a_primary_a_replica_and_three_sentinels_that_agree(
    servers: _Servers, tmp_path: Path
) -> None:
    password = redis_password()
    primary_port = servers.start("primary", DEPLOY / "redis" / "redis.conf", "--appendonly", "no")
    replica_port = servers.start(
        "replica",
        DEPLOY / "redis" / "replica.conf",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        str(primary_port),
    )
    replica = Redis(port=replica_port, password=password, decode_responses=True)
    _until(lambda: replica.info("replication").get("master_link_status") == "up", "the replica linked", servers)

    text = (DEPLOY / "redis" / "sentinel.conf").read_text()
    monitor = re.compile(r"^(sentinel monitor \S+) \S+ \d+ (\d+)$", re.MULTILINE)
    assert monitor.search(text)
    sentinel_ports = []
    for index in range(3):  # a sentinel rewrites its file: each its own copy, as on its own host
        copy = tmp_path / f"sentinel{index}.conf"
        copy.write_text(monitor.sub(rf"\1 127.0.0.1 {primary_port} \2", text))
        sentinel_ports.append(servers.start(f"sentinel{index}", copy, "--sentinel"))
    sentinel = Redis(port=sentinel_ports[0], decode_responses=True)
    name = re.search(r"^sentinel monitor (\S+)", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    master = _until(
        lambda: (m := sentinel.sentinel_master(name)) and m["num-other-sentinels"] == 2 and m["num-slaves"] == 1 and m,
        "the sentinels knowing the replica and each other",
        servers,
    )
    assert master["is_master"] and not master["is_odown"] and not master["is_sdown"]  # auth-pass is right
    assert sentinel.execute_command("SENTINEL", "CKQUORUM", name).startswith("OK 3 usable Sentinels")
    replica.close()
    sentinel.close()


# --- the README's section


def test_the_readme_section_names_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running across hosts", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"deploy/[\w./@-]+", section))
    assert {"deploy/env/control.env", "deploy/env/worker.env", "deploy/redis/sentinel.conf"} <= named
    missing = [path for path in named if not (ROOT / path.rstrip(".")).exists()]
    assert not missing, missing
