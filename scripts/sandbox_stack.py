"""`make run`'s sandbox mode: when nothing of Telegram is configured, the stack runs against the Telegram sandbox
(`run_sandbox.py`) with a demo fleet, apart from any real data.

When: `SANDBOX=0` never; `TG_MTPROTO_DC` set (a Telegram of your own) never; `SANDBOX=1` always; else when the
configured database holds no account and no API app (a fresh machine). What it changes for the stack, and
nothing else: its own directory (`<.local>/sandbox/`, made afresh each run), its own SQLite database, its own
embedded Redis, its own SECRET_KEY, `FLEET_SANDBOX=1` (the CLI's and the bot's marker), and the worker's
TG_MTPROTO_DC / TG_MTPROTO_PUBKEY pointed at the sandbox: the same settings a real custom data centre takes.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path

OFF = ("0", "false", "no", "off")
ON = ("1", "true", "yes", "on")
BANNER = (
    "🧪 ════════════════════════════════ SANDBOX ════════════════════════════════\n"
    "🧪 No Telegram is configured, so this stack runs against the Telegram sandbox on 127.0.0.1:\n"
    "🧪 demo accounts, a demo database and Redis of their own; nothing reaches Telegram.\n"
    "🧪 SANDBOX=0 turns it off; configuring Telegram (an account, an API app, TG_MTPROTO_DC) does too.\n"
    "🧪 ═══════════════════════════════════════════════════════════════════════════"
)


def real_telegram_in(database_url: str) -> str | None:
    """What in the configured database says Telegram is configured (accounts or API apps), or None."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not Path(path).exists():
            return None
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            for table, what in (("accounts", "accounts"), ("api_apps", "API apps")):
                try:
                    count = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                except SQLAlchemyError:
                    connection.rollback()
                    continue
                if count:
                    return f"the database holds {what} ({count})"
    except SQLAlchemyError as error:
        return f"the database could not be read ({type(error).__name__}), so it is not assumed empty"
    finally:
        engine.dispose()
    return None


def sandbox_wanted(env: dict[str, str], database_url: str) -> tuple[bool, str]:
    """Whether to run the sandbox, and why (said in one line at the start)."""
    setting = env.get("SANDBOX", "").strip().lower()
    if setting in OFF:
        return False, "SANDBOX=0"
    if env.get("TG_MTPROTO_DC"):
        return False, "TG_MTPROTO_DC names a Telegram data centre"
    if setting in ON:
        return True, "SANDBOX=1"
    reason = real_telegram_in(database_url)
    if reason is not None:
        return False, reason
    return True, "nothing of Telegram is configured"


class SandboxStart:
    """The sandbox's directory made afresh, its process started, and what the stack's processes need to use it."""

    def __init__(self, local: Path, root: Path) -> None:
        self.directory = local / "sandbox"
        self.root = root
        self.process: subprocess.Popen[str] | None = None
        self.dc_setting = ""

    def running(self) -> int | None:
        """The pid of a sandbox still running from this directory (another `make run`), if any."""
        import json
        import os

        try:
            pid = int(json.loads((self.directory / "control.json").read_text())["pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid

    def prepare(self) -> None:
        """A new, empty directory (a new run is a new demo: nothing mixes with the last); RuntimeError while
        another stack's sandbox runs from it."""
        pid = self.running()
        if pid is not None:
            raise RuntimeError(
                f"a sandbox is running from {self.directory} already (pid {pid}): another `make run`? Stop it first"
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.directory.chmod(0o700)

    def start(self, env: dict[str, str]) -> subprocess.Popen[str]:
        """Start `run_sandbox.py`; returns once it says where it listens (its first line)."""
        self.process = subprocess.Popen(
            [sys.executable, "run_sandbox.py", "--dir", str(self.directory)],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches `make run` only, which stops the sandbox after the fleet
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("2@") or "@127.0.0.1:" in line:
                self.dc_setting = line.strip()
                return self.process
            sys.stdout.write(f"[sandbox] {line}")
        raise RuntimeError(f"the sandbox exited with code {self.process.wait()} before listening")

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """The stack's environment in sandbox mode (the Redis URL is set apart: an embedded one of its own)."""
        key = secrets.token_urlsafe(32)
        key_file = self.directory / "secret_key"
        key_file.write_text(key)
        key_file.chmod(0o600)
        for name in ("REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_SENTINEL_PASSWORD"):
            env.pop(name, None)
        env |= {
            "DATABASE_URL": f"sqlite:///{self.directory / 'fleet.db'}",
            "SECRET_KEY": key,
            "FLEET_SANDBOX": "1",
            "SANDBOX_CONTROL_FILE": str(self.directory / "control.json"),
        }
        return env

    def point_worker(self, env: dict[str, str]) -> dict[str, str]:
        return env | {"TG_MTPROTO_DC": self.dc_setting, "TG_MTPROTO_PUBKEY": str(self.directory / "server_key.pem")}
