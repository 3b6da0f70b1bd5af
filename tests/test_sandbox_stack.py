"""`make run` on a machine with nothing of Telegram configured, as a new user runs it (scripts/dev_stack.py, the
code path of `make run`): the sandbox starts with a demo fleet of 20 accounts logged in through the login flow
and running on the local worker; a message sent from the CLI gets the autoreply plugin's answer over the real
client's pushed updates; Ctrl-C stops it all. And when Telegram is configured, or SANDBOX=0, it stays off."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.sandbox_demo import AUTOREPLY, DEMO_ACCOUNTS
from scripts.sandbox_stack import sandbox_wanted
from tests.support.stack import ROOT, MakeRun, fresh_machine, wait_until

pytestmark = pytest.mark.processes

PINGPONG = """
from telethon import events

DESCRIPTION = "Answers ping with pong"
CONFIG_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "default": "pong"}}}


def setup(client, context):
    @client.on(events.NewMessage(incoming=True, pattern=r"(?i)^ping$", func=lambda event: event.is_private))
    async def pong(event):
        await event.reply(context.config["answer"])
        asked = await context.kv.incr("asked")
        context.emit("ping", f"asked {asked} times")
"""


def second_shell(local: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`source .local/env; run_cli.py ARGS` in another shell, as the stack's banner says."""
    command = f"set -a; . {local / 'env'}; set +a; exec {sys.executable} {ROOT / 'run_cli.py'} " + " ".join(
        f"'{arg}'" for arg in args
    )
    clean = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    return subprocess.run(["bash", "-c", command], env=clean, capture_output=True, text=True, timeout=120)


def running_accounts(local: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    listed = second_shell(local, env, "accounts", "list", "--json")
    if listed.returncode != 0:
        return []
    return [a for a in json.loads(listed.stdout) if a["status"] == "running" and a["live"]]


def test_make_run_with_nothing_configured_runs_a_sandbox_fleet(tmp_path: Path, netguard_log: Path) -> None:
    env = fresh_machine(tmp_path, netguard_log)
    local = tmp_path / "local"
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "pingpong.py").write_text(PINGPONG)  # a plugin author's own, as the README's loop
    (tmp_path / ".env").write_text(f"PLUGINS_DIR={tmp_path / 'plugins'}\n")
    stack = MakeRun(env)
    lines = stack.lines
    pids: list[int] = []
    try:
        wait_until(lambda: (local / "env").exists(), 120, message="the stack's .local/env")
        running = wait_until(
            lambda: len(found := running_accounts(local, env)) == DEMO_ACCOUNTS and found,
            300,
            interval=1,
            message=f"{DEMO_ACCOUNTS} demo accounts running",
        )
        assert sorted(a["username"] for a in running) == [f"demo{n:02d}" for n in range(1, DEMO_ACCOUNTS + 1)]
        assert {a["worker"] for a in running} == {"box"}
        output = "".join(lines)
        assert "SANDBOX" in output and "sandbox: on (nothing of Telegram is configured)" in output

        listed = second_shell(local, env, "list")
        assert listed.stderr.startswith("🧪 SANDBOX") and "🟢 online  box" in listed.stdout

        # The autoreply plugin is enabled on account 1 (loaded once the worker applies the plugin configuration).
        def answered() -> bool:
            second_shell(local, env, "sandbox", "send", "--to", "1", "--text", "Здравствуйте")
            chat = json.loads(second_shell(local, env, "sandbox", "chat", "1", "--with", "tester", "--json").stdout)
            return any(m["out"] and m["text"] == AUTOREPLY["text"] for m in chat["messages"])

        wait_until(answered, 180, interval=3, message="the autoreply's answer in the sandbox's chat")
        human = second_shell(local, env, "sandbox", "chat", "1", "--with", "tester")
        assert "← @tester" in human.stdout and "Здравствуйте" in human.stdout and "→ @tester" in human.stdout

        # A plugin author's loop: enable their plugin on a sandbox account, send, read the answer and the events.
        (tmp_path / "pong.json").write_text('{"answer": "pong!"}')
        enabled = second_shell(
            local, env, "plugins", "enable", "pingpong", "7", "--config", str(tmp_path / "pong.json")
        )
        assert enabled.returncode == 0, enabled.stderr

        def ponged() -> bool:
            second_shell(local, env, "sandbox", "send", "--to", "7", "--text", "ping", "--as", "olga")
            chat = json.loads(second_shell(local, env, "sandbox", "chat", "7", "--with", "olga", "--json").stdout)
            return any(m["out"] and m["text"] == "pong!" for m in chat["messages"])

        wait_until(ponged, 180, interval=3, message="the author's plugin answering in the sandbox")
        wait_until(
            lambda: "asked 1 times" in second_shell(local, env, "accounts", "show", "7").stdout,
            60,
            interval=1,
            message="the plugin's event in the CLI",
        )

        # Telegram's refusals on demand reach the fleet as Telegram's would.
        assert second_shell(local, env, "sandbox", "revoke", "20").returncode == 0

        def status_of_20() -> str:
            listed = second_shell(local, env, "accounts", "list", "--json")
            return next((a["status"] for a in json.loads(listed.stdout) if a["id"] == 20), "") if listed.stdout else ""

        wait_until(lambda: status_of_20() == "unauthorized", 120, interval=1, message="account 20 unauthorized")
        assert not (tmp_path / "real.db").exists()  # the sandbox's data stays in its own database
        assert (local / "sandbox" / "fleet.db").exists()
        pids += [int(part.split("pid ")[1].split(")")[0]) for part in output.split(", ") if "(pid " in part]

        # A second `make run` here while this one runs would wipe its sandbox: it refuses and changes nothing.
        again = subprocess.run(
            [sys.executable, "-m", "scripts.dev_stack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 1 and "a sandbox is running from" in again.stdout
        assert second_shell(local, env, "sandbox", "status").returncode == 0
        assert len(pids) >= 4  # sandbox, backend, worker, demo
    finally:
        stack.stop()  # Ctrl-C
    output = "".join(lines)
    assert "[stack] stopped" in output and "Traceback" not in output
    for pid in pids:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or zombie(pid), 30, message=f"pid {pid} gone")
    assert not (local / "sandbox" / "control.json").exists()  # the sandbox said goodbye


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_sandbox_is_off_when_told_or_when_telegram_is_configured(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'none.db'}"
    assert sandbox_wanted({}, empty) == (True, "nothing of Telegram is configured")
    assert sandbox_wanted({"SANDBOX": "0"}, empty) == (False, "SANDBOX=0")
    assert sandbox_wanted({"TG_MTPROTO_DC": "2@10.0.0.5:443"}, empty)[0] is False
    assert sandbox_wanted({"TG_MTPROTO_DC": "2@10.0.0.5:443", "SANDBOX": "1"}, empty)[0] is False
    configured = tmp_path / "fleet.db"
    with sqlite3.connect(configured) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
        connection.execute("CREATE TABLE api_apps (id INTEGER PRIMARY KEY)")
    assert sandbox_wanted({}, f"sqlite:///{configured}") == (True, "nothing of Telegram is configured")
    with sqlite3.connect(configured) as connection:
        connection.execute("INSERT INTO api_apps (id) VALUES (1)")
    assert sandbox_wanted({}, f"sqlite:///{configured}") == (False, "the database holds API apps (1)")
    assert sandbox_wanted({"SANDBOX": "1"}, f"sqlite:///{configured}") == (True, "SANDBOX=1")
    with sqlite3.connect(configured) as connection:
        connection.execute("DELETE FROM api_apps")
        connection.execute("INSERT INTO accounts (id) VALUES (1), (2)")
    assert sandbox_wanted({}, f"sqlite:///{configured}") == (False, "the database holds accounts (2)")
