"""The plugin host (`worker.plugins.host.PluginHost`) on a real loop thread with a fake client and a real Redis:
attaching, reconfiguring and detaching plugins, and isolating the ones that hang or raise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from celery_app import keys
from common.plugin_catalogue import PluginInfo
from tests.support import plugin_harness
from tests.support.fake_events import deliver, sent
from tests.support.fake_telegram import FakeClient
from tests.support.plugin_harness import (
    ACCOUNT,
    PHONE,
    apply,
    attach,
    replies,
    settle,
    statuses,
    wire_events,
)
from tests.support.stack import wait_until
from worker.loops import LoopThread
from worker.plugins.host import PluginHost

# The harness's fixtures, all of them: a fixture finds the fixtures it needs in the test's own module.
telegram_redis, loop_thread, catalogue, clock, make_host, client = plugin_harness.FIXTURES


def test_attach_apply_detach(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    catalogue: dict[str, PluginInfo],
) -> None:
    host = make_host()
    attach(
        loop_thread,
        host,
        {"echo": {"prefix": "A:"}, "nothere": {}, "watch": {"patterns": []}, "setup_fails": {}},
        client,
    )
    assert host.loaded(ACCOUNT) == {"echo": {"prefix": "A:"}}
    assert len(client.list_event_handlers()) == 1  # setup_fails's handler went with it
    found = statuses(redis_client, host)
    assert found["echo"].state == "running" and found["echo"].errors == 0
    assert found["nothere"].state == "error" and "unknown plugin" in found["nothere"].last_error
    assert found["watch"].state == "error"
    assert found["watch"].last_error == "invalid configuration: patterns: [] has less than 1 item"
    assert (
        found["setup_fails"].state == "error" and found["setup_fails"].last_error == "setup failed: KeyError: 'missing'"
    )

    deliver(redis_client, PHONE, chat_id=42, text="hi")
    assert replies(redis_client, 1) == [{"chat_id": 42, "text": "A:hi"}]

    apply(loop_thread, host, {"echo": {"prefix": "B:"}})  # reconfigured in place, the connection untouched
    assert catalogue["echo"].module.TORN_DOWN == ["A:"]
    assert host.loaded(ACCOUNT) == {"echo": {"prefix": "B:"}} and client.is_connected()
    assert len(client.list_event_handlers()) == 1
    deliver(redis_client, PHONE, chat_id=42, text="again")
    assert replies(redis_client, 2)[1] == {"chat_id": 42, "text": "B:again"}
    assert set(statuses(redis_client, host)) == {"echo"}  # the ones no longer wanted are forgotten

    apply(loop_thread, host, {"echo": {"prefix": "B:"}})  # unchanged: left alone
    assert catalogue["echo"].module.TORN_DOWN == ["A:"]
    assert redis_client.hget(keys.plugin_store("echo", ACCOUNT), "answered") == "2"

    apply(loop_thread, host, {})
    assert host.loaded(ACCOUNT) == {} and client.list_event_handlers() == []
    assert catalogue["echo"].module.TORN_DOWN == ["A:", "B:"]
    assert statuses(redis_client, host) == {}

    apply(loop_thread, host, {"echo": {"prefix": "C:"}})
    loop_thread.call(host.detach(ACCOUNT), 10)
    assert host.loaded(ACCOUNT) == {} and client.list_event_handlers() == []
    assert catalogue["echo"].module.TORN_DOWN == ["A:", "B:", "C:"]
    assert host.flush(5) and not redis_client.exists(keys.plugin_status("w1", ACCOUNT))
    assert client.is_connected()


def test_a_setup_that_hangs_is_given_up(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("worker.plugins.host.SETUP_TIMEOUT", 0.2)
    host = make_host()
    attach(loop_thread, host, {"slow_setup": {}, "echo": {"prefix": "ok:"}}, client)
    assert host.loaded(ACCOUNT) == {"echo": {"prefix": "ok:"}}
    status = statuses(redis_client, host)["slow_setup"]
    assert status.state == "error" and status.last_error == "setup did not finish within 0.2 s"


def test_a_raising_handler_is_counted_and_reported_while_the_others_work(
    make_host: Callable[..., PluginHost], client: FakeClient, loop_thread: LoopThread, redis_client: Redis
) -> None:
    host = make_host()
    attach(loop_thread, host, {"boom": {}, "echo": {"prefix": "ok:"}}, client)
    for index in range(3):
        deliver(redis_client, PHONE, chat_id=42, text=str(index))
    assert sorted(item["text"] for item in replies(redis_client, 3)) == ["ok:0", "ok:1", "ok:2"]

    status = wait_until(lambda: (s := statuses(redis_client, host)["boom"]).errors == 3 and s, 5)
    assert status.state == "failing"
    assert status.last_error.startswith("ValueError: bad input from +1 ")  # one line, the phone masked
    assert "1234567" not in status.last_error and "\n" not in status.last_error
    assert statuses(redis_client, host)["echo"].state == "running"
    errors = wire_events(redis_client, "plugin.error")
    assert len(errors) == 1  # the first one, then at most one a minute
    assert errors[0].subject == str(ACCOUNT)
    assert errors[0].data == {"plugin": "boom", "error": status.last_error, "count": 1, "blocked": False}
    assert client.is_connected()


def test_stop_propagation_passes_through(
    make_host: Callable[..., PluginHost], client: FakeClient, loop_thread: LoopThread, redis_client: Redis
) -> None:
    host = make_host()
    attach(loop_thread, host, {"a_stop": {}, "echo": {"prefix": "echo:"}}, client)  # loaded in name order
    deliver(redis_client, PHONE, chat_id=42, text="stop here")
    deliver(redis_client, PHONE, chat_id=43, text="go on")
    settle(redis_client)
    assert sorted(item["text"] for item in sent(redis_client, PHONE)) == ["echo:go on", "stopped"]
    assert statuses(redis_client, host)["a_stop"].errors == 0
