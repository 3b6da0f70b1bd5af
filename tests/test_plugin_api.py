"""What a plugin author is promised (`worker.plugins.api`): the client without the fleet's secrets, tracked
background tasks, capped events, and the README's example plugin working as written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redis import Redis

from common.plugin_catalogue import PluginInfo, discover, validate_config
from tests.support import plugin_harness
from tests.support.fake_events import deliver
from tests.support.fake_telegram import FakeClient
from tests.support.plugin_harness import (
    ACCOUNT,
    PHONE,
    Clock,
    attach,
    matches,
    replies,
    statuses,
    wire_events,
)
from tests.support.stack import ROOT, wait_until
from worker.loops import LoopThread
from worker.plugins.host import PluginHost

# The harness's fixtures, all of them: a fixture finds the fixtures it needs in the test's own module.
telegram_redis, loop_thread, catalogue, clock, make_host, client = plugin_harness.FIXTURES


def test_plugins_do_not_get_the_fleets_secrets(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    catalogue: dict[str, PluginInfo],
) -> None:
    host = make_host()
    attach(loop_thread, host, {"greedy": {}, "echo": {"prefix": ">"}}, client)
    found = catalogue["greedy"].module.FOUND
    assert found["session"] == "session: the account's secrets are not available to plugins"
    assert found["api_hash"] == "api_hash: the account's secrets are not available to plugins"
    assert found["api_id"] == "api_id: the account's secrets are not available to plugins"
    assert "private attributes" in found["_sender"] and "private attributes" in found["_fleet_client"]
    assert "manages the account's connection" in found["disconnect"]
    assert "manages the account's connection" in found["log_out"]
    assert "may not change" in found["setattr"]
    assert found["me"] == int(PHONE.lstrip("+")[-9:])  # everything else is the account's client
    assert found["handlers"] == 1  # only its own
    assert statuses(redis_client, host)["greedy"].state == "running"


def test_background_tasks_are_tracked_reported_and_cancelled(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    catalogue: dict[str, PluginInfo],
) -> None:
    host = make_host()
    attach(loop_thread, host, {"tasker": {}}, client)
    forever, _fail_soon = catalogue["tasker"].module.STARTED
    assert forever.get_name() == f"plugin:tasker:{ACCOUNT}"
    status = wait_until(lambda: (s := statuses(redis_client, host)["tasker"]).state == "failing" and s, 5)
    assert status.last_error == "RuntimeError: background job failed" and status.errors == 1
    loop_thread.call(host.detach(ACCOUNT), 10)
    assert forever.cancelled()


def test_emitted_events_are_capped(
    make_host: Callable[..., PluginHost], client: FakeClient, loop_thread: LoopThread, redis_client: Redis
) -> None:
    host = make_host()
    attach(loop_thread, host, {"emitter": {}}, client)
    assert host.flush(5)
    emitted = wire_events(redis_client, "plugin.event")
    assert len(emitted) == 60  # per minute, per plugin and account
    assert emitted[0].data["kind"] == "hello" and len(emitted[0].data["text"]) == 1000
    assert emitted[1].data == {"plugin": "emitter", "kind": "tick", "text": "0", "alert": True}
    assert emitted[2].data["alert"] is False


def test_the_readme_plugin_works(
    tmp_path: Path, redis_client: Redis, client: FakeClient, loop_thread: LoopThread, clock: Clock
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    directory = tmp_path / "readme_plugins"
    directory.mkdir()
    (directory / "pingpong.py").write_text(code[: code.index("```")])
    catalogue = discover(str(directory))
    assert validate_config(catalogue["pingpong"], {"report_every": 0}) == [
        "report_every: 0 is less than the minimum of 1"
    ]
    host = PluginHost(redis_client, "w1", catalogue, clock=clock)
    try:
        attach(loop_thread, host, {"pingpong": {"report_every": 2}}, client)
        deliver(redis_client, PHONE, chat_id=42, text="Ping")
        deliver(redis_client, PHONE, chat_id=-1001234567890, text="ping", sender_id=43)  # not private
        assert replies(redis_client, 1) == [{"chat_id": 42, "text": "pong"}]
        deliver(redis_client, PHONE, chat_id=42, text="ping")
        assert len(replies(redis_client, 2)) == 2
        assert matches(redis_client, 1) == [
            {"plugin": "pingpong", "kind": "ping", "text": "asked 2 times", "alert": True}
        ]
    finally:
        host.close()
