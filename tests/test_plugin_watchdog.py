"""Blocking detection (`worker.plugins.watchdog.LoopWatchdog`, through the host): a plugin that blocks its event
loop is named, reported once per stall, and the other plugins carry on; a stall outside plugins is only logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from redis import Redis

from tests.support import plugin_harness
from tests.support.fake_events import deliver
from tests.support.fake_telegram import FakeClient
from tests.support.plugin_harness import PHONE, attach, replies, statuses, wire_events
from tests.support.stack import wait_until
from worker.loops import LoopThread
from worker.plugins.host import PluginHost

# The harness's fixtures, all of them: a fixture finds the fixtures it needs in the test's own module.
telegram_redis, loop_thread, catalogue, clock, make_host, client = plugin_harness.FIXTURES


def test_a_plugin_blocking_its_loop_is_named(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = make_host(block_threshold=0.2)
    host.watch(loop_thread.loop)
    host.watch(loop_thread.loop)  # idempotent
    attach(loop_thread, host, {"sleepy": {}, "echo": {"prefix": "ok:"}}, client)
    deliver(redis_client, PHONE, chat_id=42, text="sleep now")
    status = wait_until(lambda: (s := statuses(redis_client, host)["sleepy"]).state == "blocked" and s, 5)
    assert status.errors == 1
    status = wait_until(lambda: "still" not in (s := statuses(redis_client, host)["sleepy"]).last_error and s, 5)
    seconds = float(status.last_error.removeprefix("blocked its event loop for ").removesuffix(" s"))
    assert 0.6 <= seconds <= 2.0
    blocked = wire_events(redis_client, "plugin.error")
    assert len(blocked) == 1 and blocked[0].data["plugin"] == "sleepy" and blocked[0].data["blocked"] is True
    assert statuses(redis_client, host)["echo"].state == "running"
    assert replies(redis_client, 1) == [{"chat_id": 42, "text": "ok:sleep now"}]

    async def not_a_plugin() -> None:
        time.sleep(0.5)

    with caplog.at_level(logging.WARNING, logger="worker.plugins.host"):
        loop_thread.call(not_a_plugin(), 5)
        wait_until(lambda: any("not a plugin" in record.getMessage() for record in caplog.records), 3)
    assert len(wire_events(redis_client, "plugin.error")) == 1
