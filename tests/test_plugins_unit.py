"""Plugins in-process: discovery, configuration, the host on a real loop thread with fake clients and a real
Redis (isolation, blocking detection, the proxy), and the two shipped plugins end to end through the fake
Telegram's inbox."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis import Redis

from celery_app import keys, plugin_config
from celery_app.events import WireEvent, WireEventKind
from celery_app.plugin_config import PluginStatus
from common.plugin_catalogue import PluginInfo, discover, validate_config, with_defaults
from fleet_plugins import autoreply, watch
from tests.support import fake_telegram
from tests.support.fake_events import deliver, inbox, sent
from tests.support.fake_telegram import FakeClient, session_for
from tests.support.stack import ROOT, wait_until
from worker.clients import ClientSpec
from worker.loops import LoopThread
from worker.plugins import PluginHost, PluginStore

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


def attach(loop_thread: LoopThread, host: PluginHost, configs: dict[str, dict[str, Any]], fake: FakeClient) -> None:
    loop_thread.call(host.attach(ACCOUNT, fake, configs), 10)


def apply(loop_thread: LoopThread, host: PluginHost, configs: dict[str, dict[str, Any]]) -> None:
    loop_thread.call(host.apply(ACCOUNT, configs), 10)


def statuses(redis: Redis, host: PluginHost) -> dict[str, PluginStatus]:
    assert host.flush(5)
    return plugin_config.read_status(redis, [ACCOUNT])[ACCOUNT]


def wire_events(redis: Redis, kind: str) -> list[WireEvent]:
    found = [WireEvent.from_fields(sid, raw) for sid, raw in redis.xrange(keys.EVENTS_STREAM)]
    return [event for event in found if event is not None and event.kind == kind]


def replies(redis: Redis, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    return wait_until(lambda: len(got := sent(redis, PHONE)) >= count and got, timeout, message=f"{count} replies")


def settle(redis: Redis) -> None:
    """Wait until the fake has taken every delivered message and its handlers had time to run."""
    wait_until(lambda: redis.llen(inbox(PHONE)) == 0, 5, message="inbox drained")
    time.sleep(0.4)


# --- discovery --------------------------------------------------------------------------------------------


def test_discovery_reports_broken_plugins_and_keeps_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_plugins(tmp_path / "plugins", ["echo"])
    (directory / "broken.py").write_text("import no_such_module_here\n\ndef setup(client, context): pass\n")
    (directory / "badschema.py").write_text(
        'CONFIG_SCHEMA = {"type": "nonsense"}\n\ndef setup(client, context): pass\n'
    )
    (directory / "nosetup.py").write_text("DESCRIPTION = 'no entry'\n")
    (directory / "_helper.py").write_text("raise RuntimeError('helpers are not plugins')\n")
    package = directory / "packaged"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from .impl import setup\nNAME = 'packaged_one'\nDESCRIPTION = 'in a package'\n"
    )
    (package / "impl.py").write_text("def setup(client, context):\n    return None\n")

    with caplog.at_level(logging.ERROR, logger="worker.plugins"):
        found = discover(str(directory))

    assert found["echo"].error is None and found["echo"].source == str(directory / "echo.py")
    assert found["echo"].description == "Answers every incoming message with a prefix."
    assert found["packaged_one"].error is None and found["packaged_one"].description == "in a package"
    assert found["autoreply"].source == "builtin" and found["autoreply"].error is None
    assert found["watch"].source == "builtin" and found["watch"].error is None
    assert found["broken"].module is None
    assert found["broken"].error == "import failed: ModuleNotFoundError: No module named 'no_such_module_here'"
    assert (
        found["badschema"].error is not None and "CONFIG_SCHEMA is not a valid JSON Schema" in found["badschema"].error
    )
    assert found["nosetup"].error == "it has no setup(client, context) function"
    assert "_helper" not in found
    for name in ("broken", "badschema", "nosetup"):
        assert "\n" not in (found[name].error or "")
        assert sum(f"plugin {name} (" in record.getMessage() for record in caplog.records) == 1, name
    assert validate_config(found["broken"], {}) == [f"plugin broken cannot be used: {found['broken'].error}"]


def test_an_installed_distribution_provides_a_plugin_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fleet_ep_demo.py").write_text(
        'DESCRIPTION = "from a distribution"\nCONFIG_SCHEMA = {"type": "object", "required": ["x"]}\n'
        "def setup(client, context):\n    pass\n"
    )
    info = tmp_path / "fleet_ep_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fleet-ep-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fleet.plugins]\nepdemo = fleet_ep_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    found = discover(None)

    assert found["epdemo"].source == "entry point" and found["epdemo"].error is None
    assert found["epdemo"].description == "from a distribution"
    assert validate_config(found["epdemo"], {}) == ['"x" is a required property']


# --- configuration ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> dict[str, PluginInfo]:
    return discover(None)


@pytest.mark.parametrize(
    "config",
    [
        {"text": "Away"},
        {"text": "Away", "cooldown_minutes": 0, "hours": "09:00-18:00", "timezone": "Europe/Berlin"},
        {"text": "Night shift", "cooldown_minutes": 2.5, "hours": "22:00-06:00"},
    ],
)
def test_good_autoreply_configs(shipped: dict[str, PluginInfo], config: dict[str, Any]) -> None:
    assert validate_config(shipped["autoreply"], config) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, ['"text" is a required property']),
        ({"text": ""}, ['text: "" is shorter than 1 character']),
        ({"text": "x" * 4097}, ["text: is longer than 4096 characters"]),
        ({"text": "a", "cooldown_minutes": -1}, ["cooldown_minutes: -1 is less than the minimum of 0"]),
        ({"text": "a", "cooldown_minutes": "10"}, ['cooldown_minutes: "10" is not of type "number"']),
        ({"text": "a", "colour": "red"}, ["Additional properties are not allowed ('colour' was unexpected)"]),
        ({"text": "a", "hours": "9-18"}, ["hours: '9-18' is not HH:MM-HH:MM (24-hour clock), e.g. 09:00-18:00"]),
        (
            {"text": "a", "hours": "25:00-18:00"},
            ["hours: '25:00-18:00' is not HH:MM-HH:MM (24-hour clock), e.g. 09:00-18:00"],
        ),
        (
            {"text": "a", "hours": "09:00-09:00"},
            ["hours: the start and the end are the same; leave hours out to answer at any time"],
        ),
        (
            {"text": "a", "timezone": "Mars/Olympus"},
            ["timezone: 'Mars/Olympus' is not a known IANA time zone, e.g. Europe/Berlin"],
        ),
        ("not an object", ["the configuration must be a JSON object"]),
    ],
)
def test_bad_autoreply_configs_say_what_is_wrong(
    shipped: dict[str, PluginInfo], config: Any, expected: list[str]
) -> None:
    problems = validate_config(shipped["autoreply"], config)
    if expected[0].startswith("text: is longer"):
        assert (
            len(problems) == 1 and problems[0].startswith("text: ") and "is longer than 4096 characters" in problems[0]
        )
    else:
        assert problems == expected


def test_watch_configs(shipped: dict[str, PluginInfo]) -> None:
    info = shipped["watch"]
    assert validate_config(info, {"patterns": ["invoice", "/order #\\d+/i"]}) == []
    assert validate_config(info, {"patterns": ["x"], "chats": [-1001234567890, "@shop", "12345"]}) == []
    assert validate_config(info, {"chats": []}) == ['"patterns" is a required property']
    assert validate_config(info, {"patterns": []}) == ["patterns: [] has less than 1 item"]
    assert validate_config(info, {"patterns": ["ok", "/(unclosed/"]}) == [
        "patterns[1]: /(unclosed/ is not a valid regular expression: missing ), unterminated subpattern at position 0"
    ]
    assert validate_config(info, {"patterns": ["x"], "chats": [1.5]}) == [
        "chats[0]: 1.5 is not valid under any of the schemas listed in the 'anyOf' keyword"
    ]


def test_schema_defaults_fill_in_what_is_missing(shipped: dict[str, PluginInfo]) -> None:
    filled = with_defaults(shipped["autoreply"].schema, {"text": "a"})
    assert filled == {"text": "a", "cooldown_minutes": 60, "timezone": "UTC"}
    assert with_defaults(shipped["watch"].schema, {"patterns": ["x"]}) == {"patterns": ["x"], "chats": []}


# --- Redis: desired configuration, statuses, the store -----------------------------------------------------


def test_desired_configuration_and_version(redis_client: Redis) -> None:
    assert plugin_config.version(redis_client) is None
    plugin_config.write_desired(redis_client, 7, {"watch": {"patterns": ["x"]}, "autoreply": {"text": "a"}})
    assert plugin_config.version(redis_client) == 1
    plugin_config.write_desired_many(redis_client, {7: {"watch": {"patterns": ["y"]}}, 8: {}})
    assert plugin_config.version(redis_client) == 2
    redis_client.hset(keys.account_plugins(8), "junk", "not json")
    assert plugin_config.read_desired(redis_client, [7, 8, 9]) == {7: {"watch": {"patterns": ["y"]}}, 8: {}, 9: {}}


def test_plugin_store_values_expire_and_count(redis_client: Redis, redis_url: str) -> None:
    async def scenario(redis: Redis) -> list[Any]:
        store = PluginStore(redis, "demo", 3)
        await store.set("a", "1")
        await store.set("short", "x", ttl=0.05)
        seen = [await store.get("a"), await store.get("short"), await store.incr("n"), await store.incr("n", 5)]
        await asyncio.sleep(0.15)
        seen.append(await store.get("short"))
        await store.delete("a")
        seen.append(await store.get("a"))
        await store.set("a", 2.5)
        seen.append(await store.get("a"))
        return seen

    assert asyncio.run(scenario(redis_client)) == ["1", "x", 1, 6, None, None, "2.5"]
    raw = Redis.from_url(redis_url)  # a client that does not decode answers as it did
    try:
        assert asyncio.run(scenario(raw))[:2] == ["1", "x"]
    finally:
        raw.close()
    assert redis_client.exists(keys.plugin_store("demo", 3))


# --- the host ---------------------------------------------------------------------------------------------


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
    assert host.flush(5) and not redis_client.exists(keys.plugin_status(ACCOUNT))
    assert client.is_connected()


def test_a_setup_that_hangs_is_given_up(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import plugins

    monkeypatch.setattr(plugins, "SETUP_TIMEOUT", 0.2)
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

    with caplog.at_level(logging.WARNING, logger="worker.plugins"):
        loop_thread.call(not_a_plugin(), 5)
        wait_until(lambda: any("not a plugin" in record.getMessage() for record in caplog.records), 3)
    assert len(wire_events(redis_client, "plugin.error")) == 1


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


# --- autoreply --------------------------------------------------------------------------------------------


def test_working_hours() -> None:
    day = autoreply.parse_hours("09:00-18:00")
    night = autoreply.parse_hours("22:00-06:00")
    assert day is not None and night is not None
    assert autoreply.within(day, clock_time(9, 0)) and not autoreply.within(day, clock_time(18, 0))
    assert not autoreply.within(day, clock_time(8, 59)) and autoreply.within(day, clock_time(17, 59))
    assert autoreply.within(night, clock_time(23, 30)) and autoreply.within(night, clock_time(5, 59))
    assert not autoreply.within(night, clock_time(6, 0)) and not autoreply.within(night, clock_time(12, 0))


def test_autoreply_answers_private_chats_once_per_cooldown(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    clock: Clock,
) -> None:
    host = make_host()
    attach(loop_thread, host, {"autoreply": {"text": "Away", "cooldown_minutes": 10}}, client)
    deliver(redis_client, PHONE, chat_id=42, text="hello")
    assert replies(redis_client, 1) == [{"chat_id": 42, "text": "Away"}]
    deliver(redis_client, PHONE, chat_id=42, text="are you there?")  # within the cooldown
    deliver(redis_client, PHONE, chat_id=43, text="hi", sender_bot=True)  # a bot
    deliver(redis_client, PHONE, chat_id=-1001234567890, text="group message", sender_id=44)  # not private
    deliver(redis_client, PHONE, chat_id=45, text="sent from my phone", out=True)  # the account's own
    settle(redis_client)
    assert len(sent(redis_client, PHONE)) == 1

    loop_thread.call(host.detach(ACCOUNT), 10)  # the cooldown survives a restart (it is in Redis)
    attach(loop_thread, make_host(), {"autoreply": {"text": "Away", "cooldown_minutes": 10}}, client)
    clock.at += 9 * 60
    deliver(redis_client, PHONE, chat_id=42, text="still?")
    settle(redis_client)
    assert len(sent(redis_client, PHONE)) == 1
    clock.at += 2 * 60
    deliver(redis_client, PHONE, chat_id=42, text="hello again")
    assert replies(redis_client, 2)[1] == {"chat_id": 42, "text": "Away"}


def test_autoreply_is_silent_in_working_hours(
    make_host: Callable[..., PluginHost],
    client: FakeClient,
    loop_thread: LoopThread,
    redis_client: Redis,
    clock: Clock,
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock.at = datetime(2024, 5, 6, 10, 0, tzinfo=berlin).timestamp()  # 08:00 UTC
    host = make_host()
    config = {"text": "Back at 9", "cooldown_minutes": 0, "hours": "09:00-18:00", "timezone": "Europe/Berlin"}
    attach(loop_thread, host, {"autoreply": config}, client)
    deliver(redis_client, PHONE, chat_id=42, text="working?")
    settle(redis_client)
    assert sent(redis_client, PHONE) == []
    clock.at = datetime(2024, 5, 6, 20, 0, tzinfo=berlin).timestamp()
    deliver(redis_client, PHONE, chat_id=42, text="evening")
    deliver(redis_client, PHONE, chat_id=42, text="no cooldown")
    assert [item["text"] for item in replies(redis_client, 2)] == ["Back at 9", "Back at 9"]

    apply(loop_thread, host, {"autoreply": {**config, "hours": "22:00-06:00"}})  # a night shift
    clock.at = datetime(2024, 5, 6, 23, 30, tzinfo=berlin).timestamp()
    deliver(redis_client, PHONE, chat_id=42, text="late")
    settle(redis_client)
    assert len(sent(redis_client, PHONE)) == 2


# --- watch ------------------------------------------------------------------------------------------------


def matches(redis: Redis, count: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        return [event.data for event in wire_events(redis, "plugin.event")]

    return wait_until(lambda: len(got := found()) >= count and got, 5, message=f"{count} matches")


def test_watch_alerts_with_a_link_to_the_message(
    make_host: Callable[..., PluginHost], client: FakeClient, loop_thread: LoopThread, redis_client: Redis
) -> None:
    host = make_host()
    attach(loop_thread, host, {"watch": {"patterns": ["invoice", "/order #\\d+/"]}}, client)
    deliver(redis_client, PHONE, chat_id=-1001234567890, chat_title="Team", text="Please pay the INVOICE today", id=17)
    first = matches(redis_client, 1)[0]
    assert first == {
        "plugin": "watch",
        "kind": "match",
        "text": "Team: Please pay the INVOICE today https://t.me/c/1234567890/17",
        "alert": True,
    }
    deliver(
        redis_client,
        PHONE,
        chat_id=-1009876543210,
        chat_username="shopnews",
        chat_title="Shop",
        text="new order #42 placed",
        id=5,
    )
    assert matches(redis_client, 2)[1]["text"] == "Shop: new order #42 placed https://t.me/shopnews/5"
    deliver(redis_client, PHONE, chat_id=-1001234567890, text="an ORDER #43 in capitals")  # the regex is case-sensitive
    deliver(redis_client, PHONE, chat_id=-1001234567890, text="nothing to see")
    deliver(redis_client, PHONE, chat_id=42, chat_title="Bob", text="invoice attached", id=3)  # private: no link
    assert matches(redis_client, 3)[2]["text"] == "Bob: invoice attached"
    settle(redis_client)
    assert host.flush(5) and len(wire_events(redis_client, "plugin.event")) == 3

    long_text = "a" * 200 + " invoice " + "b" * 200
    deliver(redis_client, PHONE, chat_id=-1001234567890, chat_title="Team", text=long_text, id=18)
    text = matches(redis_client, 4)[3]["text"]
    assert text == f"Team: …{'a' * 59} invoice {'b' * 59}… https://t.me/c/1234567890/18"


def test_watch_only_listens_to_the_chosen_chats(
    make_host: Callable[..., PluginHost], client: FakeClient, loop_thread: LoopThread, redis_client: Redis
) -> None:
    host = make_host()
    attach(loop_thread, host, {"watch": {"patterns": ["alarm"], "chats": ["@Shopnews", -1001111111111]}}, client)
    deliver(redis_client, PHONE, chat_id=-1002222222222, chat_title="Other", text="alarm elsewhere")
    deliver(redis_client, PHONE, chat_id=-1001111111111, chat_title="Chosen", text="alarm here", id=1)
    deliver(
        redis_client, PHONE, chat_id=-1003333333333, chat_username="shopnews", chat_title="Shop", text="alarm", id=2
    )
    settle(redis_client)
    assert host.flush(5)
    texts = sorted(event.data["text"] for event in wire_events(redis_client, "plugin.event"))
    assert texts == ["Chosen: alarm here https://t.me/c/1111111111/1", "Shop: alarm https://t.me/shopnews/2"]


def test_watch_config_helpers() -> None:
    assert watch.compile_pattern("Invoice").search("an INVOICE")
    assert watch.compile_pattern("a.b").search("axb") is None  # keywords are literal
    assert watch.compile_pattern("/a.b/").search("axb") and watch.compile_pattern("/A.B/i").search("axb")
    ids, names = watch.chat_filter([12345, -100777, "@Shop", "-1001"])
    assert {12345, -12345, -1000000012345, -100777, -1001} <= ids and names == {"shop"}


def test_fake_inbox_items_are_json(redis_client: Redis) -> None:
    item = deliver(redis_client, PHONE, chat_id=42, text="hi")
    assert item["is_private"] is True and item["sender_id"] == 42 and isinstance(item["id"], int)
    assert json.loads(redis_client.lindex(inbox(PHONE), 0)) == item
    with pytest.raises(TypeError):
        deliver(redis_client, PHONE, text="no chat")


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


def test_status_writes_are_fenced_by_the_lease_and_survive_a_redis_outage(redis_client: Redis) -> None:
    from scripts.embedded_redis import free_port
    from worker.plugins import _Writer

    writer = _Writer(redis_client, "w1/inst")
    redis_client.set(keys.account_lease(2), "w2/other")  # account 2 runs elsewhere now
    redis_client.set(keys.account_lease(3), "w1/inst")
    for account in (1, 2, 3):
        writer.status(account, "watch", PluginStatus("running"))
    assert writer.flush(5)
    found = plugin_config.read_status(redis_client, [1, 2, 3])
    assert set(found[1]) == {"watch"} and found[2] == {} and set(found[3]) == {"watch"}
    writer.close()

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    writer = _Writer(down, None)
    writer.MAX_PENDING_EVENTS = 3
    for index in range(5):
        writer.event(WireEventKind.PLUGIN_EVENT, 1, {"plugin": "p", "kind": "k", "text": str(index), "alert": False})
    for state in ("running", "failing", "blocked"):
        writer.status(1, "p", PluginStatus(state))
    assert not writer.flush(0.5)
    writer.redis = redis_client  # Redis is back
    assert writer.flush(10)
    texts = [event.data["text"] for event in wire_events(redis_client, "plugin.event")]
    assert texts == ["2", "3", "4"]  # the newest events kept
    assert plugin_config.read_status(redis_client, [1])[1]["p"].state == "blocked"
    writer.close()
    down.close()
