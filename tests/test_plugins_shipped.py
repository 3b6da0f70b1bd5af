"""The plugins shipped in `fleet_plugins`: their configurations, and `autoreply` and `watch` end to end through
the fake Telegram's inbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from redis import Redis

from common.plugin_catalogue import PluginInfo, discover, validate_config, with_defaults
from fleet_plugins import autoreply, watch
from tests.support import plugin_harness
from tests.support.fake_events import deliver, inbox, sent
from tests.support.fake_telegram import FakeClient
from tests.support.plugin_harness import (
    ACCOUNT,
    PHONE,
    Clock,
    apply,
    attach,
    matches,
    replies,
    settle,
    wire_events,
)
from worker.loops import LoopThread
from worker.plugins.host import PluginHost

# The harness's fixtures, all of them: a fixture finds the fixtures it needs in the test's own module.
telegram_redis, loop_thread, catalogue, clock, make_host, client = plugin_harness.FIXTURES


# --- configuration ---------------------------------------------------------------------------------------


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
