"""The loopback MTProto server pushes what happens in a chat between two accounts to their live connections, as
Telegram does: real Telethon clients, each with `@client.on(...)` handlers, see a message sent (events.NewMessage),
edited (events.MessageEdited) and read (events.MessageRead) by the other in real time, with pts that continue
their own (no updates.getDifference needed), and catch up on what they missed while away with getDifference."""

from __future__ import annotations

from typing import Any

import pytest
from telethon import TelegramClient, errors, events

from sandbox.mtproto import MTProtoServer
from tests.support import mtproto_harness
from tests.support.mtproto_harness import PHONE, make_client, run, wait_until

# The harness's fixtures, both of them: a fixture finds the fixtures it needs in the test's own module.
server_key, server = mtproto_harness.FIXTURES

BOB = "+15550000003"  # the other account (PHONE is Ann, @ann)
WAIT = 10.0


class Seen:
    """What a live client's event handlers received."""

    def __init__(self, client: TelegramClient) -> None:
        self.client = client
        self.key_id: int = client.session.auth_key.key_id
        self.new: list[Any] = []
        self.outgoing: list[Any] = []
        self.edited: list[Any] = []
        self.read: list[Any] = []

        @client.on(events.NewMessage(incoming=True))
        async def on_new(event: Any) -> None:
            self.new.append(event)

        @client.on(events.NewMessage(outgoing=True))
        async def on_outgoing(event: Any) -> None:
            self.outgoing.append(event)

        @client.on(events.MessageEdited)
        async def on_edited(event: Any) -> None:
            self.edited.append(event)

        @client.on(events.MessageRead)
        async def on_read(event: Any) -> None:
            self.read.append(event)

    def texts(self) -> list[str]:
        return [event.raw_text for event in self.new]


@pytest.fixture
def pair(server: MTProtoServer) -> MTProtoServer:
    server.add_account(BOB, first_name="Bob", username="bob")
    return server


async def connected(server: MTProtoServer, phone: str) -> Seen:
    """A live client of the account (an auth key of its own), its update state fetched: updates.getState, then
    the one updates.getDifference Telethon makes as it starts."""
    seen = Seen(make_client(server, server.session_string(phone)))
    await seen.client.connect()
    assert await seen.client.get_me()
    await wait_until(lambda: differences(server, seen) == 1, WAIT)
    return seen


def differences(server: MTProtoServer, seen: Seen) -> int:
    """How many times the client asked for the difference (which it does on noticing a gap in pts)."""
    return sum(1 for call in server.calls(method="updates.getDifference") if call.auth_key_id == seen.key_id)


def test_a_message_sent_edited_and_read_reaches_the_other_side_live(pair: MTProtoServer) -> None:
    server = pair
    ann_id, bob_id = server.account(PHONE).user_id, server.account(BOB).user_id

    async def scenario() -> None:
        ann, bob = await connected(server, PHONE), await connected(server, BOB)
        ann_elsewhere = await connected(server, PHONE)  # another session of Ann's: sees what she sends
        try:
            sent = await ann.client.send_message("bob", "hello Bob")
            await wait_until(lambda: bob.new, WAIT)
            event = bob.new[0]
            assert (event.raw_text, event.sender_id, event.chat_id, event.out) == ("hello Bob", ann_id, ann_id, False)
            assert (await event.get_sender()).first_name == "Ann"  # the users come with the update
            await wait_until(lambda: ann_elsewhere.outgoing, WAIT)
            assert [(e.raw_text, e.out, e.id) for e in ann_elsewhere.outgoing] == [("hello Bob", True, sent.id)]
            assert not ann.outgoing  # the connection that sent it has its answer instead

            edited = await ann.client.edit_message("bob", sent.id, "hello again, Bob")
            assert (edited.id, edited.raw_text) == (sent.id, "hello again, Bob")
            await wait_until(lambda: bob.edited, WAIT)
            assert [(e.id, e.raw_text, e.sender_id) for e in bob.edited] == [(event.id, "hello again, Bob", ann_id)]
            await wait_until(lambda: ann_elsewhere.edited, WAIT)
            assert [e.raw_text for e in ann_elsewhere.edited] == ["hello again, Bob"]

            assert await bob.client.send_read_acknowledge("ann", event.message)
            await wait_until(lambda: ann.read, WAIT)
            read = ann.read[0]
            assert (read.outbox, read.chat_id, read.max_id) == (True, bob_id, sent.id)
            assert read.is_read(sent)
        finally:
            for seen in (ann, bob, ann_elsewhere):
                await seen.client.disconnect()
        assert [differences(server, seen) for seen in (ann, bob, ann_elsewhere)] == [1, 1, 1]  # no gap in pts

    run(scenario(), 60)
    assert [(m.out, m.text, m.read) for m in server.chat(PHONE, "bob")] == [(True, "hello again, Bob", True)]
    assert [(m.out, m.text, m.read) for m in server.chat(BOB, PHONE)] == [(False, "hello again, Bob", True)]


def test_pushes_continue_the_recipients_pts(pair: MTProtoServer) -> None:
    """Several messages both ways, each account's pts advancing with each: every one arrives, in order, with no
    gap for Telethon to fetch with getDifference."""
    server = pair

    async def scenario() -> None:
        ann, bob = await connected(server, PHONE), await connected(server, BOB)
        try:
            for number in range(3):
                await ann.client.send_message("bob", f"ann {number}")
                await bob.client.send_message("ann", f"bob {number}")
            await wait_until(lambda: len(bob.new) == 3 and len(ann.new) == 3, WAIT)
            assert bob.texts() == ["ann 0", "ann 1", "ann 2"]
            assert ann.texts() == ["bob 0", "bob 1", "bob 2"]
        finally:
            await ann.client.disconnect()
            await bob.client.disconnect()
        assert (differences(server, ann), differences(server, bob)) == (1, 1)  # the one at start: no gap

    run(scenario(), 60)


def test_editing_is_refused_as_on_telegram(pair: MTProtoServer) -> None:
    server = pair

    async def scenario() -> None:
        ann, bob = await connected(server, PHONE), await connected(server, BOB)
        try:
            sent = await ann.client.send_message("bob", "original")
            await wait_until(lambda: bob.new, WAIT)
            with pytest.raises(errors.MessageIdInvalidError):
                await ann.client.edit_message("bob", sent.id + 100, "nope")
            with pytest.raises(errors.MessageIdInvalidError):  # her message, but in another chat
                await ann.client.edit_message("SpamBot", sent.id, "nope")
            with pytest.raises(errors.MessageNotModifiedError):
                await ann.client.edit_message("bob", sent.id, "original")
            with pytest.raises(errors.MessageEmptyError):
                await ann.client.edit_message("bob", sent.id, " ", parse_mode=None)
            with pytest.raises(errors.MessageAuthorRequiredError):  # Bob's copy of Ann's message
                await bob.client.edit_message("ann", bob.new[0].id, "not mine")
        finally:
            await ann.client.disconnect()
            await bob.client.disconnect()
        assert not bob.edited

    run(scenario(), 60)
    assert [m.text for m in server.chat(BOB, PHONE)] == ["original"]


def test_the_servers_own_deliver_edit_and_read_are_pushed(pair: MTProtoServer) -> None:
    """What the sandbox does from outside (`deliver`, `edit_delivered`, `read`) reaches live clients too."""
    server = pair
    bob_id = server.account(BOB).user_id

    async def scenario() -> None:
        ann, bob = await connected(server, PHONE), await connected(server, BOB)
        try:
            assert server.deliver(BOB, "from outside", sender=PHONE) == 1
            await wait_until(lambda: bob.new, WAIT)
            assert bob.texts() == ["from outside"]
            await wait_until(lambda: ann.outgoing, WAIT)  # Ann's own session sees it leave
            message_id = server.chat(BOB, PHONE)[-1].id
            assert server.edit_delivered(BOB, message_id, "edited outside") == 1
            await wait_until(lambda: bob.edited, WAIT)
            assert [(e.id, e.raw_text) for e in bob.edited] == [(message_id, "edited outside")]
            assert [m.read for m in server.chat(PHONE, BOB)] == [False]
            assert server.read(BOB, "ann") == 1
            await wait_until(lambda: ann.read, WAIT)
            assert (ann.read[0].chat_id, ann.read[0].max_id) == (bob_id, server.chat(PHONE, BOB)[-1].id)
            assert server.read(BOB, PHONE) == 0  # nothing new to read: nothing pushed
        finally:
            await ann.client.disconnect()
            await bob.client.disconnect()

    run(scenario(), 60)
    assert [(m.text, m.read) for m in server.chat(PHONE, BOB)] == [("edited outside", True)]
    with pytest.raises(KeyError):
        server.edit_delivered(PHONE, 999, "no such message")


def test_a_client_that_was_away_catches_up_with_get_difference(pair: MTProtoServer) -> None:
    server = pair

    async def scenario() -> None:
        ann, bob = await connected(server, PHONE), await connected(server, BOB)
        try:
            await ann.client.send_message("bob", "while here")
            await wait_until(lambda: bob.new, WAIT)
            await bob.client.disconnect()
            await ann.client.send_message("bob", "while away 1")
            await ann.client.send_message("bob", "while away 2")
            assert server.deliver(BOB, "while away 3", sender=PHONE) == 0  # nobody of Bob's to push to
            await bob.client.connect()
            await ann.client.send_message("bob", "back")  # Telethon asks for the difference, and gets all
            await wait_until(lambda: len(bob.new) == 5, WAIT)
            assert sorted(bob.texts()) == sorted(["while here", "while away 1", "while away 2", "while away 3", "back"])
        finally:
            await ann.client.disconnect()
            await bob.client.disconnect()
        assert differences(server, bob) > 1  # the gap was noticed and filled

    run(scenario(), 60)
