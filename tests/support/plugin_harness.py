"""What the plugin tests share: plugins written for them (`TEST_PLUGINS`), a host on a real loop thread over a
real Redis with a fake client and a settable clock, and helpers to attach plugins and read statuses, wire
events and replies.

The fixtures (`FIXTURES`: `telegram_redis`, `loop_thread`, `catalogue`, `clock`, `make_host`, `client`) are not
registered globally (the board's tests have a `clock` of their own): a test module binds all of them, since a
fixture finds the fixtures it needs in the test's own module.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from celery_app import keys, plugin_config
from celery_app.events import WireEvent
from celery_app.plugin_config import PluginStatus
from common.plugin_catalogue import PluginInfo, discover
from tests.support import fake_telegram
from tests.support.fake_events import inbox, sent
from tests.support.fake_telegram import FakeClient, session_for
from tests.support.stack import wait_until
from worker.clients import ClientSpec
from worker.loops import LoopThread
from worker.plugins.host import PluginHost

API_HASH = "0123456789abcdef0123456789abcdef"
PHONE = "+15550000001"
ACCOUNT = 1


# --- plugins written for these tests ----------------------------------------------------------------------

TEST_PLUGINS = {
    "echo": '''
        """Answers every incoming message with a prefix."""
        from telethon import events

        CONFIG_SCHEMA = {
            "type": "object",
            "properties": {"prefix": {"type": "string"}, "count": {"type": "integer", "default": 0}},
            "required": ["prefix"],
        }
        TORN_DOWN = []

        def setup(client, context):
            @client.on(events.NewMessage(incoming=True))
            async def answer(event):
                await context.kv.incr("answered")
                await event.respond(context.config["prefix"] + event.raw_text)

            def teardown():
                TORN_DOWN.append(context.config["prefix"])

            return teardown
    ''',
    "boom": """
        from telethon import events

        async def setup(client, context):
            @client.on(events.NewMessage)
            async def explode(event):
                raise ValueError("bad input from +15551234567\\nsecond line")
    """,
    "a_stop": """
        from telethon import events

        def setup(client, context):
            @client.on(events.NewMessage(pattern="stop"))
            async def stop(event):
                await event.respond("stopped")
                raise events.StopPropagation
    """,
    "sleepy": """
        import time
        from telethon import events

        def setup(client, context):
            @client.on(events.NewMessage(pattern="sleep"))
            async def nap(event):
                time.sleep(0.8)
    """,
    "greedy": """
        from telethon import events

        FOUND = {}

        async def setup(client, context):
            for name in ("session", "api_hash", "api_id", "_sender", "_fleet_client", "disconnect", "log_out"):
                try:
                    getattr(client, name)
                    FOUND[name] = "reachable"
                except AttributeError as error:
                    FOUND[name] = str(error)
            try:
                client.parse_mode = "html"
                FOUND["setattr"] = "allowed"
            except AttributeError as error:
                FOUND["setattr"] = str(error)
            FOUND["me"] = (await client.get_me()).id
            client.add_event_handler(lambda event: None, events.NewMessage)
            FOUND["handlers"] = len(client.list_event_handlers())
    """,
    "tasker": """
        import asyncio

        STARTED = []

        def setup(client, context):
            async def forever():
                await asyncio.sleep(3600)

            async def fail_soon():
                await asyncio.sleep(0.05)
                raise RuntimeError("background job failed")

            STARTED.append(context.create_task(forever()))
            STARTED.append(context.create_task(fail_soon()))
    """,
    "emitter": """
        def setup(client, context):
            context.emit("hello", "x" * 1500)
            for index in range(70):
                context.emit("tick", str(index), alert=index == 0)
    """,
    "slow_setup": """
        import asyncio

        async def setup(client, context):
            await asyncio.sleep(30)
    """,
    "setup_fails": """
        from telethon import events

        def setup(client, context):
            client.add_event_handler(lambda event: None, events.NewMessage)
            raise KeyError("missing")
    """,
}


def write_plugins(directory: Path, names: list[str] | None = None) -> Path:
    directory.mkdir(exist_ok=True)
    for name, source in TEST_PLUGINS.items():
        if names is None or name in names:
            (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return directory


# --- fixtures ---------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def telegram_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FAKE_TELEGRAM_REDIS", redis_url)
    monkeypatch.setattr(fake_telegram, "_redis_client", None)
    return redis_url


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread(0)
    yield thread
    thread.close()


@pytest.fixture
def catalogue(tmp_path: Path) -> dict[str, PluginInfo]:
    return discover(str(write_plugins(tmp_path / "plugins")))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 5, 6, 12, 0, tzinfo=UTC).timestamp())


@pytest.fixture
def make_host(
    redis_client: Redis, catalogue: dict[str, PluginInfo], clock: Clock
) -> Iterator[Callable[..., PluginHost]]:
    hosts: list[PluginHost] = []

    def make(block_threshold: float = 1.0) -> PluginHost:
        host = PluginHost(redis_client, "w1", catalogue, block_threshold, clock=clock)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def client(telegram_redis: str, loop_thread: LoopThread) -> Iterator[FakeClient]:
    fake = FakeClient(ClientSpec(ACCOUNT, PHONE, 12345, API_HASH, session_for(PHONE)))
    loop_thread.call(fake.connect(), 5)
    yield fake
    loop_thread.call(fake._disconnect(), 5)


FIXTURES = (telegram_redis, loop_thread, catalogue, clock, make_host, client)


def attach(loop_thread: LoopThread, host: PluginHost, configs: dict[str, dict[str, Any]], fake: FakeClient) -> None:
    loop_thread.call(host.attach(ACCOUNT, fake, configs), 10)


def apply(loop_thread: LoopThread, host: PluginHost, configs: dict[str, dict[str, Any]]) -> None:
    loop_thread.call(host.apply(ACCOUNT, configs), 10)


def statuses(redis: Redis, host: PluginHost) -> dict[str, PluginStatus]:
    assert host.flush(5)
    return plugin_config.read_status(redis, {ACCOUNT: "w1"})[ACCOUNT]


def wire_events(redis: Redis, kind: str) -> list[WireEvent]:
    found = [WireEvent.from_fields(sid, raw) for sid, raw in redis.xrange(keys.worker_events("w1"))]
    return [event for event in found if event is not None and event.kind == kind]


def replies(redis: Redis, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    return wait_until(lambda: len(got := sent(redis, PHONE)) >= count and got, timeout, message=f"{count} replies")


def settle(redis: Redis) -> None:
    """Wait until the fake has taken every delivered message and its handlers had time to run."""
    wait_until(lambda: redis.llen(inbox(PHONE)) == 0, 5, message="inbox drained")
    time.sleep(0.4)


def matches(redis: Redis, count: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        return [event.data for event in wire_events(redis, "plugin.event")]

    return wait_until(lambda: len(got := found()) >= count and got, 5, message=f"{count} matches")
