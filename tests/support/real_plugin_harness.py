"""The shipped plugins on a REAL Telethon client: the worker's own client factory (`worker.telegram`) pointed at
the loopback MTProto server as TG_MTPROTO_DC / TG_MTPROTO_PUBKEY point it, the worker's `PluginHost` over the
test's Redis with a settable clock, on a real loop thread; updates pushed by the server (`MTProtoServer.deliver`).

The account's client is made, connected and given its plugins the way the worker does for an account WITH
plugins: `receive_updates` stays on (the runner turns it off only when no plugin is enabled), then
connect / is_user_authorized / get_me as `AccountRunner.run`, then `host.watch(loop)` and `host.attach` as
`PluginMethods.attach_plugins`.

`RealAccount.seen` is a test observer registered on the raw client AFTER the plugins' handlers: Telethon awaits an
event's handlers one after another in registration order, so once the observer has seen a message, every
plugin handler for it has finished (a reply it sent is on the server). Tests wait for that instead of sleeping.

Fixtures (`FIXTURES`) are bound by the test module, as in `plugin_harness`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from telethon import events

from common.plugin_catalogue import PluginInfo, discover
from config import MTProtoEndpoint
from sandbox.mtproto import Account, MTProtoServer
from tests.support import mtproto_harness, plugin_harness
from tests.support.mtproto_harness import API_HASH, API_ID, PHONE, make_client
from tests.support.plugin_harness import Clock
from tests.support.stack import wait_until
from worker.clients import ClientSpec
from worker.loops import LoopThread
from worker.plugins.host import PluginHost
from worker.telegram import telethon_factory

ACCOUNT = 1
CONTACT, CONTACT_USERNAME = "+15550000003", "sam_roe"
CALL_TIMEOUT = 20.0  # a call on the loop thread (connect, attach, send): generous for a busy machine
WAIT = 20.0  # how long a test waits for an outcome


@dataclass
class Seen:
    text: str
    out: bool
    sender_id: int | None


@dataclass
class RealAccount:
    """The account (PHONE) connected through the worker's factory, with the worker's plugin host."""

    server: MTProtoServer
    contact: Account
    loop_thread: LoopThread
    host: PluginHost
    client: Any  # the worker's FleetClient (a TelegramClient)
    seen: list[Seen] = field(default_factory=list)

    def attach(self, configs: dict[str, dict[str, Any]]) -> None:
        """Load plugins as the worker does once the account runs, then register the observer after them."""

        async def attach() -> None:
            self.host.watch(self.loop_thread.loop)
            await self.host.attach(ACCOUNT, self.client, configs)

            async def observe(event: Any) -> None:
                self.seen.append(Seen(event.raw_text, bool(event.out), event.sender_id))

            self.client.add_event_handler(observe, events.NewMessage())

        self.loop_thread.call(attach(), CALL_TIMEOUT)

    def deliver(self, text: str) -> None:
        """The contact writes to the account: stored, and pushed to the account's one subscribed connection."""
        assert self.server.deliver(PHONE, text, sender=CONTACT) == 1

    def processed(self, text: str) -> Seen:
        """Wait until the client dispatched the message `text` and every plugin handler for it has finished."""
        return wait_until(
            lambda: next((item for item in self.seen if item.text == text), None), WAIT, message=f"{text!r} handled"
        )

    def answers(self) -> list[str]:
        """What the account wrote to the contact, as the contact's chat shows it (oldest first)."""
        return [message.text for message in self.server.chat(CONTACT, PHONE) if not message.out]

    def wait_answers(self, count: int) -> list[str]:
        return wait_until(lambda: len(got := self.answers()) >= count and got, WAIT, message=f"{count} answers")

    def send(self, text: str) -> None:
        """The account writes to the contact from this very client (the one hosting the plugins)."""
        self.loop_thread.call(self.client.send_message(CONTACT_USERNAME, text), CALL_TIMEOUT)

    def send_from_another_session(self, text: str) -> None:
        """The account writes to the contact from another of its sessions ("from my phone"): this client gets it
        as an outgoing message (pushed to the account's other connections, or from updates.getDifference once
        the next update shows a gap in pts, depending on the server's version)."""

        async def send() -> None:
            phone = make_client(self.server, self.server.session_string(PHONE), receive_updates=False)
            await phone.connect()
            try:
                await phone.send_message(CONTACT_USERNAME, text)
            finally:
                await phone.disconnect()

        self.loop_thread.call(send(), CALL_TIMEOUT)


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def contact(server: MTProtoServer) -> Account:
    return server.add_account(CONTACT, first_name="Sam", last_name="Roe", username=CONTACT_USERNAME)


@pytest.fixture
def shipped() -> dict[str, PluginInfo]:
    return discover(None)


@pytest.fixture
def plugin_host(redis_client: Redis, shipped: dict[str, PluginInfo], clock: Clock) -> Iterator[PluginHost]:
    host = PluginHost(redis_client, "w1", shipped, 1.0, clock=clock)
    yield host
    host.close()


@pytest.fixture
def account(
    server: MTProtoServer,
    contact: Account,
    loop_thread: LoopThread,
    plugin_host: PluginHost,
    tmp_path: Path,
) -> Iterator[RealAccount]:
    key_file = server.write_public_key(tmp_path / "mtproto.pub")
    factory = telethon_factory(MTProtoEndpoint(server.dc_id, server.host, server.port, key_file))
    spec = ClientSpec(ACCOUNT, PHONE, API_ID, API_HASH, server.session_string(PHONE), receive_updates=True)
    client: Any = factory(spec)

    async def start() -> None:
        await client.connect()
        assert await client.is_user_authorized()
        assert (await client.get_me()).id == server.account(PHONE).user_id

    loop_thread.call(start(), CALL_TIMEOUT)
    real = RealAccount(server, contact, loop_thread, plugin_host, client)
    yield real

    async def stop() -> None:
        try:
            await plugin_host.detach(ACCOUNT)
        finally:
            await client.disconnect()

    loop_thread.call(stop(), CALL_TIMEOUT)


FIXTURES = (
    mtproto_harness.server_key,
    mtproto_harness.server,
    plugin_harness.loop_thread,
    plugin_harness.clock,
    contact,
    shipped,
    plugin_host,
    account,
)
