"""The shipped plugins (`autoreply`, `watch`) end to end on a REAL Telethon client: the worker's client factory
and plugin host, the loopback MTProto server pushing the contact's messages as updates, the replies read back
from the server's chats (the fake-client versions are in test_plugins_shipped.py)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from redis import Redis

from celery_app import keys
from celery_app.events import WireEvent
from tests.support import real_plugin_harness
from tests.support.mtproto_harness import PHONE
from tests.support.plugin_harness import Clock, wire_events
from tests.support.real_plugin_harness import ACCOUNT, CONTACT, WAIT, RealAccount
from tests.support.stack import wait_until
from worker.plugins.host import PluginHost

# The harness's fixtures, all of them: a fixture finds the fixtures it needs in the test's own module.
(server_key, server, loop_thread, clock, contact, shipped, plugin_host, account) = real_plugin_harness.FIXTURES


def plugin_events(redis: Redis, host: PluginHost) -> list[WireEvent]:
    assert host.flush(5)
    return wire_events(redis, "plugin.event")


def no_plugin_errors(redis: Redis, host: PluginHost) -> None:
    """No handler raised (a `blocked` report of a stalled loop on a busy machine is not the plugin's error)."""
    assert host.flush(5)
    raised = [event.data for event in wire_events(redis, "plugin.error") if not event.data.get("blocked")]
    assert raised == []


# --- autoreply --------------------------------------------------------------------------------------------


def test_autoreply_answers_a_real_message_once_per_cooldown(
    account: RealAccount, redis_client: Redis, clock: Clock
) -> None:
    account.attach({"autoreply": {"text": "Away", "cooldown_minutes": 60}})
    account.deliver("Здравствуйте")
    assert account.wait_answers(1) == ["Away"]
    first = account.processed("Здравствуйте")
    assert (first.out, first.sender_id) == (False, account.contact.user_id)
    kv = keys.plugin_store("autoreply", ACCOUNT)
    assert redis_client.hget(kv, f"replied:{account.contact.user_id}") == repr(clock.at)  # the cooldown, kept

    account.deliver("Вы здесь?")  # within the cooldown
    account.processed("Вы здесь?")  # every plugin handler for it has finished
    assert account.answers() == ["Away"]

    clock.at += 61 * 60  # the cooldown is over
    account.deliver("Ау!")
    assert account.wait_answers(2) == ["Away", "Away"]
    chat = [(message.out, message.text) for message in account.server.chat(CONTACT, PHONE)]
    assert chat == [(True, "Здравствуйте"), (False, "Away"), (True, "Вы здесь?"), (True, "Ау!"), (False, "Away")]
    # The account's own chat with the contact shows the same conversation from its side.
    mine = [(message.out, message.text) for message in account.server.chat(PHONE, CONTACT)]
    assert mine == [(not out, text) for out, text in chat]
    no_plugin_errors(redis_client, account.host)


def test_autoreply_is_silent_in_working_hours(account: RealAccount, redis_client: Redis, clock: Clock) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock.at = datetime(2024, 5, 6, 14, 0, tzinfo=berlin).timestamp()  # inside 09:00-18:00 Berlin
    config = {"text": "Back at 9", "cooldown_minutes": 0, "hours": "09:00-18:00", "timezone": "Europe/Berlin"}
    account.attach({"autoreply": config})
    account.deliver("working?")
    account.processed("working?")
    assert account.answers() == []

    clock.at = datetime(2024, 5, 6, 20, 0, tzinfo=berlin).timestamp()  # after hours: it answers
    account.deliver("evening")
    assert account.wait_answers(1) == ["Back at 9"]
    account.deliver("no cooldown")
    assert account.wait_answers(2) == ["Back at 9", "Back at 9"]
    no_plugin_errors(redis_client, account.host)


def test_autoreply_never_answers_the_accounts_own_messages(account: RealAccount, redis_client: Redis) -> None:
    account.attach({"autoreply": {"text": "Away", "cooldown_minutes": 0}})  # 0: any wrong answer would show
    account.send("on my way")  # from the client hosting the plugin
    account.send_from_another_session("sent from my phone")  # reaches this client as an outgoing message
    account.deliver("ok, see you")  # the contact's, after it: the one message to answer
    own = account.processed("sent from my phone")
    assert (own.out, own.sender_id) == (True, account.server.account(PHONE).user_id)  # dispatched, as outgoing
    assert account.processed("ok, see you").out is False
    assert account.wait_answers(3) == ["on my way", "sent from my phone", "Away"]
    assert account.answers() == ["on my way", "sent from my phone", "Away"]  # only the contact's message answered
    no_plugin_errors(redis_client, account.host)


# --- watch ------------------------------------------------------------------------------------------------


def test_watch_alerts_on_a_matching_message_only(account: RealAccount, redis_client: Redis) -> None:
    account.attach({"watch": {"patterns": ["invoice"]}})
    account.deliver("nothing to see here")
    account.processed("nothing to see here")
    assert plugin_events(redis_client, account.host) == []

    account.deliver("Please find Invoice 42 attached")
    found = wait_until(lambda: plugin_events(redis_client, account.host), WAIT, message="the watch alert")
    assert [(event.subject, event.data) for event in found] == [
        (
            str(ACCOUNT),
            {"plugin": "watch", "kind": "match", "text": "Sam Roe: Please find Invoice 42 attached", "alert": True},
        )
    ]

    long_text = "a" * 100 + " Invoice 42 " + "b" * 100
    account.deliver(long_text)
    found = wait_until(lambda: len(got := plugin_events(redis_client, account.host)) >= 2 and got, WAIT)
    assert found[1].data["text"] == f"Sam Roe: …{'a' * 59} Invoice 42 {'b' * 56}…"  # the excerpt around it

    account.deliver("no match either")
    account.processed("no match either")
    assert len(plugin_events(redis_client, account.host)) == 2
    assert account.answers() == []  # watch only tells the admins
    no_plugin_errors(redis_client, account.host)
