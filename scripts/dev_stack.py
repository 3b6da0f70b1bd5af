"""`make run`: the whole stack on this machine — Redis (yours or an embedded one), backend, a worker, the bot.

With nothing of Telegram configured (or SANDBOX=1; SANDBOX=0 never) it runs against the Telegram sandbox with a
demo fleet, in a database, Redis and SECRET_KEY of its own (scripts/sandbox_stack.py). Otherwise it uses
REDIS_URL (through REDIS_SENTINELS when set) when it answers, else starts an embedded Redis on a free
local port. Without a SECRET_KEY it
makes one and keeps it in `.local/secret_key`, so sessions stored by one run can be read by the next. The
bot starts only when TG_BOT_TOKEN is set, the anonymous board only when BOARD_BOT_TOKEN is. Output of each
process is prefixed with its name; Ctrl-C stops everything this script started.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from config import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, EXIT_UNAVAILABLE, load_env_file, mask_url
from scripts.embedded_redis import EmbeddedRedis, RedisUnavailable, free_port
from scripts.sandbox_stack import BANNER, SandboxStart, sandbox_wanted

ROOT = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("FLEET_LOCAL_DIR") or ROOT / ".local")  # tests point it elsewhere
ONE_SHOT = ("demo",)  # processes that end by themselves when done: their exit stops nothing
SANDBOX_HINTS = (
    "[stack] the sandbox: .venv/bin/python run_cli.py accounts list\n"
    "[stack]              .venv/bin/python run_cli.py sandbox send --to 1 --text 'Здравствуйте'\n"
    "[stack]              .venv/bin/python run_cli.py sandbox chat 1\n"
)


def redis_answers(target: str) -> bool:
    from redis.exceptions import RedisError

    from common.redis_target import open_redis

    try:
        open_redis(target, socket_connect_timeout=1, socket_timeout=1).ping()
        return True
    except (RedisError, ValueError):
        return False


def configured_target(env: dict[str, str]) -> str:
    """REDIS_URL, or the Sentinel target when REDIS_SENTINELS is set and well formed (a malformed one is left
    for the processes to report, as a malformed REDIS_URL is)."""
    from config import ConfigError, read_redis_target

    try:
        return read_redis_target()
    except ConfigError:
        return env.get("REDIS_URL") or DEFAULT_REDIS_URL


def secret_key() -> str:
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = LOCAL / "secret_key"
    if not path.exists():
        LOCAL.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
        where = os.path.relpath(path, ROOT)
        print(f"[stack] generated a SECRET_KEY in {where} (set SECRET_KEY in .env for production)")
    return path.read_text().strip()


def stable_port() -> int | None:
    """The embedded Redis's port of the last run when it is free again, so `.local/env` stays right."""
    path = LOCAL / "redis_port"
    try:
        port = int(path.read_text().strip())
    except (OSError, ValueError):
        port = 0
    if port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                port = 0
    if not port:
        port = free_port()
    path.write_text(str(port))
    return port


def write_local_env(env: dict[str, str]) -> Path:
    """`.local/env`: what a second shell needs to reach this stack (`source .local/env`)."""
    path = LOCAL / "env"
    LOCAL.mkdir(exist_ok=True)
    names = (
        "REDIS_URL",
        "REDIS_SENTINELS",
        "REDIS_MASTER_NAME",
        "REDIS_SENTINEL_PASSWORD",
        "DATABASE_URL",
        "SECRET_KEY",
        "HEARTBEAT_INTERVAL",
        "WORKER_OFFLINE_AFTER",
        "FLEET_SANDBOX",
        "SANDBOX_CONTROL_FILE",
        "PLUGINS_DIR",
    )
    lines = [f"export {name}={shlex.quote(env[name])}" for name in names if env.get(name)]
    path.write_text("# Written by `make run` for another shell: source .local/env\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def connect_redis(env: dict[str, str], started: list[EmbeddedRedis]) -> str | None:
    """The configured Redis when it answers, else an embedded one (None: neither); says which."""
    redis_url = env.get("REDIS_URL") or DEFAULT_REDIS_URL
    target = configured_target(env)
    if redis_answers(target):
        print(f"[stack] using Redis at {mask_url(target)}")
        return redis_url
    LOCAL.mkdir(exist_ok=True)
    try:
        embedded = EmbeddedRedis(port=stable_port(), workdir=str(LOCAL)).start()
    except RedisUnavailable as error:
        print(f"[stack] Redis at {mask_url(target)} does not answer and no embedded one could start: {error}")
        return None
    started.append(embedded)
    print(f"[stack] Redis at {mask_url(target)} does not answer; started an embedded one at {embedded.url}")
    for name in ("REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_SENTINEL_PASSWORD"):
        env.pop(name, None)  # the processes use the embedded one, not the sentinels that did not answer
    return embedded.url


def pump(name: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def stop(processes: list[subprocess.Popen[str]], grace: float = 15.0) -> None:
    """SIGTERM to each, then wait for all of them together, killing what is still running after `grace` s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    embedded: list[EmbeddedRedis] = []
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        return run_stack(embedded, processes)
    except KeyboardInterrupt:  # during the start: what started is stopped below
        return 130
    finally:
        if processes:  # the fleet first, then the Telegram it talks to (the sandbox), the embedded Redis last
            print("\n[stack] stopping…")
            stop([p for name, p in processes.items() if name != "sandbox"])
            stop([p for name, p in processes.items() if name == "sandbox"])
            print("[stack] stopped")
        for server in embedded:  # whatever happened, no Redis of ours is left behind
            server.stop()


def run_stack(started: list[EmbeddedRedis], processes: dict[str, subprocess.Popen[str]]) -> int:
    stopping = threading.Event()
    for ending in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C too, even where a shell started us ignoring it
        signal.signal(ending, lambda *_: stopping.set())  # during the start too: the loop below then ends at once
    load_env_file()  # the project's .env (FLEET_ENV_FILE names another)
    env = dict(os.environ)
    sandboxed, why = sandbox_wanted(env, env.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    sandbox = SandboxStart(LOCAL, ROOT) if sandboxed else None
    if sandbox is not None:
        print(BANNER + f"\n[stack] sandbox: on ({why})")
        try:
            sandbox.prepare()
        except RuntimeError as error:
            print(f"[stack] {error}")
            return 1
        env = sandbox.environment(env)
        try:
            embedded = EmbeddedRedis(port=free_port(), workdir=str(sandbox.directory)).start()
        except RedisUnavailable as error:
            print(f"[stack] the sandbox needs a Redis of its own and none could start: {error}")
            return EXIT_UNAVAILABLE
        started.append(embedded)
        env["REDIS_URL"] = embedded.url
        print(f"[stack] the sandbox's own Redis at {embedded.url}, database {env['DATABASE_URL']}")
    else:
        print(f"[stack] sandbox: off ({why})")
        redis_url = connect_redis(env, started)
        if redis_url is None:
            return EXIT_UNAVAILABLE
        env["REDIS_URL"] = redis_url
        env["SECRET_KEY"] = secret_key()
    redis_url = env["REDIS_URL"]
    env.setdefault("WORKER_NAME", socket.gethostname())
    env.setdefault("WORKER_ADDRESS", "127.0.0.1")
    env["PYTHONUNBUFFERED"] = "1"
    worker_env = env
    if sandbox is not None:
        try:
            processes["sandbox"] = sandbox.start(env)
        except RuntimeError as error:
            print(f"[stack] {error}")
            return EXIT_UNAVAILABLE
        threading.Thread(target=pump, args=("sandbox", processes["sandbox"]), daemon=True).start()
        worker_env = sandbox.point_worker(env)

    commands = {"backend": ["run_backend.py"], "worker": ["run_worker.py"]}
    if env.get("TG_BOT_TOKEN"):
        commands["bot"] = ["run.py"]
    if env.get("BOARD_BOT_TOKEN"):
        commands["board"] = ["run_board.py"]
    if sandbox is not None:
        commands["demo"] = ["-m", "scripts.sandbox_demo"]
    for name, command in commands.items():
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=worker_env if name == "worker" else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches this script only: it stops them in order
        )
        processes[name] = process
        threading.Thread(target=pump, args=(name, process), daemon=True).start()

    local_env = write_local_env(env)
    print(
        "[stack] running: " + ", ".join(f"{name} (pid {p.pid})" for name, p in processes.items()) + "\n"
        f"[stack] in another shell: source {os.path.relpath(local_env, ROOT)}   (Redis {mask_url(redis_url)})\n"
        f"[stack]    then: .venv/bin/python run_cli.py list\n"
        f"[stack]          .venv/bin/python run_cli.py show {env['WORKER_NAME']}\n"
        + ("" if "bot" in processes else "[stack] the bot is not started: set TG_BOT_TOKEN and ADMIN_IDS in .env\n")
        + (SANDBOX_HINTS if sandbox is not None else "")
        + "[stack] Ctrl-C stops everything started here"
    )
    exit_code = 0
    reported: set[str] = set()
    try:
        while not stopping.is_set():
            for name, process in processes.items():
                if name in ONE_SHOT and process.poll() is not None:
                    if process.returncode and name not in reported:
                        print(f"[stack] {name} exited with code {process.returncode}; the rest keeps running")
                    reported.add(name)
                elif process.poll() is not None:
                    print(f"[stack] {name} exited with code {process.returncode}; stopping the rest")
                    exit_code = 1
                    stopping.set()
                    break
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
