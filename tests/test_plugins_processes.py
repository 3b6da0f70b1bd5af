"""Plugins end to end: real worker (fake Telegram, its messages delivered through the fake's inbox), backend
and CLI processes, enabled and changed while the account runs."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from redis import Redis

from tests.support.fake_events import deliver, sent
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import import_account, online
from tests.test_manager import Script

pytestmark = pytest.mark.processes
PHONE = "+15550004001"

FLAKY = textwrap.dedent(
    '''
    """A plugin that fails on "boom" and echoes anything else."""
    from telethon import events

    CONFIG_SCHEMA = {"type": "object", "properties": {"prefix": {"type": "string"}}, "additionalProperties": False}


    def setup(client, context):
        async def on_message(event):
            if event.raw_text == "boom":
                raise RuntimeError("the operator's bug")
            await event.respond(context.config.get("prefix", "") + event.raw_text)

        client.add_event_handler(on_message, events.NewMessage(incoming=True))
    '''
)


def running_account(stack: Stack, plugins_dir: Path) -> int:
    stack.env["PLUGINS_DIR"] = str(plugins_dir)
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", PHONE)
    started = stack.cli("accounts", "start", str(account_id))
    assert started.returncode == 0, started.stderr
    return account_id


def status_of(stack: Stack, account_id: int, plugin: str) -> dict:
    rows = [row for row in stack.cli_json("plugins", "status", str(account_id)) if row["plugin"] == plugin]
    return rows[0] if rows else {}


def run_id(redis: Redis, account_id: int) -> str:
    return redis.hget(f"fleet:worker:w1:account:{account_id}", "run") or ""


def test_autoreply_enabled_changed_and_disabled_on_a_running_account_without_restarting_it(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    account_id = running_account(stack, plugins_dir)
    run = run_id(redis_client, account_id)
    listed = stack.cli("plugins", "list")
    assert "autoreply" in listed.stdout and "watch" in listed.stdout
    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "Away, back Monday", "cooldown_minutes": 60}))
    enabled = stack.cli("plugins", "enable", "autoreply", str(account_id), "--config", str(config))
    assert enabled.returncode == 0 and "enabled for 1 account(s)" in enabled.stdout
    wait_until(lambda: status_of(stack, account_id, "autoreply").get("state") == "running", 20, message="loaded")
    deliver(redis_client, PHONE, chat_id=111, text="hello?")
    wait_until(lambda: sent(redis_client, PHONE), 20, message="an away message")
    deliver(redis_client, PHONE, chat_id=111, text="still there?")  # within the cooldown: no second reply
    deliver(redis_client, PHONE, chat_id=-100200, text="in a group", is_private=False)  # not private: none
    deliver(redis_client, PHONE, chat_id=222, text="hi")
    wait_until(lambda: len(sent(redis_client, PHONE)) >= 2, 20, message="a reply to the second chat")
    assert sent(redis_client, PHONE) == [
        {"chat_id": 111, "text": "Away, back Monday"},
        {"chat_id": 222, "text": "Away, back Monday"},
    ]
    # A new configuration applies to the running account: no restart (the same runner), a new text.
    config.write_text(json.dumps({"text": "New text", "cooldown_minutes": 0}))
    assert stack.cli("plugins", "enable", "autoreply", str(account_id), "--config", str(config)).returncode == 0
    wait_until(
        lambda: (
            deliver(redis_client, PHONE, chat_id=333, text="ping")
            and sent(redis_client, PHONE)[-1]["text"] == "New text"
        ),
        20,
        interval=0.5,
        message="the new text is used",
    )
    assert run_id(redis_client, account_id) == run
    disabled = stack.cli("plugins", "disable", "autoreply", str(account_id))
    assert disabled.returncode == 0 and "disabled for 1 account(s)" in disabled.stdout
    wait_until(lambda: status_of(stack, account_id, "autoreply") == {}, 10, message="gone from status")
    wait_until(lambda: not redis_client.exists(f"fleet:worker:w1:account:{account_id}:plugins"), 20, message="unloaded")
    before = len(sent(redis_client, PHONE))
    deliver(redis_client, PHONE, chat_id=444, text="anyone?")
    time.sleep(1.5)  # a loaded handler would answer within a poll (0.1 s); none must
    assert len(sent(redis_client, PHONE)) == before
    assert run_id(redis_client, account_id) == run


def test_a_failing_plugin_is_reported_and_the_account_and_other_plugins_keep_working(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "flaky.py").write_text(FLAKY)
    (plugins_dir / "broken.py").write_text("import not_a_module_anywhere\n")
    account_id = running_account(stack, plugins_dir)
    listed = stack.cli("plugins", "list")
    assert "broken" in listed.stdout and "import failed" in listed.stdout
    refused = stack.cli("plugins", "enable", "broken", str(account_id))
    assert refused.returncode == 1 and "cannot be loaded" in refused.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prefix": 5}))
    wrong = stack.cli("plugins", "enable", "flaky", str(account_id), "--config", str(bad))
    assert wrong.returncode == 1 and "does not fit plugin 'flaky'" in wrong.stderr
    unknown = stack.cli("plugins", "enable", "nope", str(account_id))
    assert unknown.returncode == 1 and "unknown plugin 'nope'" in unknown.stderr
    assert stack.cli_json("plugins", "status", str(account_id)) == []  # nothing changed
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"prefix": "echo: "}))
    assert stack.cli("plugins", "enable", "flaky", str(account_id), "--config", str(good)).returncode == 0
    watch = tmp_path / "watch.json"
    watch.write_text(json.dumps({"patterns": ["invoice"]}))
    assert stack.cli("plugins", "enable", "watch", str(account_id), "--config", str(watch)).returncode == 0
    wait_until(lambda: status_of(stack, account_id, "watch").get("state") == "running", 20, message="loaded")
    deliver(redis_client, PHONE, chat_id=-1001234567890, chat_username="shop", is_private=False, text="boom")
    failing = wait_until(
        lambda: (s := status_of(stack, account_id, "flaky")).get("state") == "failing" and s, 20, message="failing"
    )
    assert failing["errors"] == 1 and failing["last_error"] == "RuntimeError: the operator's bug"
    deliver(redis_client, PHONE, chat_id=-1001234567890, chat_username="shop", is_private=False, text="new invoice #7")
    wait_until(
        lambda: any(e["kind"] == "plugin.alert" for e in stack.cli_json("accounts", "show", str(account_id))["events"]),
        20,
        message="the watch alert in the account's history",
    )
    events = stack.cli_json("accounts", "show", str(account_id))["events"]
    alert = next(e for e in events if e["kind"] == "plugin.alert")
    assert "invoice #7" in alert["detail"] and "https://t.me/shop/" in alert["detail"]
    assert any(e["kind"] == "plugin.error" and "the operator's bug" in e["detail"] for e in events)
    wait_until(lambda: {"chat_id": -1001234567890, "text": "echo: new invoice #7"} in sent(redis_client, PHONE), 20)
    assert stack.cli_json("accounts", "show", str(account_id))["status"] == "running"
    table = stack.cli("plugins", "status", str(account_id)).stdout
    assert "⚠️ failing" in table and "🟢 running" in table
    # Stopping the account unloads its plugins: nothing is shown as running.
    assert stack.cli("accounts", "stop", str(account_id)).returncode == 0
    wait_until(
        lambda: {row["state"] for row in stack.cli_json("plugins", "status", str(account_id))} == {"not running"},
        20,
        message="not running once stopped",
    )


def test_redis_losing_its_data_leaves_the_plugin_running_and_shown_as_such(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    account_id = running_account(stack, plugins_dir)
    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "Away", "cooldown_minutes": 0}))
    assert stack.cli("plugins", "enable", "autoreply", str(account_id), "--config", str(config)).returncode == 0
    wait_until(lambda: status_of(stack, account_id, "autoreply").get("state") == "running", 20, message="loaded")
    redis_client.flushall()  # a Redis restart with empty data: the mirror, the statuses, the leases are gone
    wait_until(
        lambda: redis_client.hget(f"fleet:account:{account_id}:plugins", "autoreply") is not None,
        30,
        message="the backend wrote the plugin configuration again",
    )
    wait_until(
        lambda: status_of(stack, account_id, "autoreply").get("state") == "running",
        30,
        message="the worker reports the plugin again",
    )
    deliver(redis_client, PHONE, chat_id=555, text="hello after the restart")
    wait_until(lambda: {"chat_id": 555, "text": "Away"} in sent(redis_client, PHONE), 20, message="it still answers")
    assert stack.cli_json("accounts", "show", str(account_id))["status"] == "running"
