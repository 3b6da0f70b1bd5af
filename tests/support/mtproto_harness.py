"""What the tests of the loopback MTProto server share: its test accounts, a session-wide RSA key Telethon
trusts (`server_key`), a running server with one account (`server`), real Telethon clients pointed at it
(`make_client`), and running a coroutine under a timeout.

The fixtures (`FIXTURES`: `server_key`, `server`) are not registered globally (other tests run servers of their
own): a test module binds both, since a fixture finds the fixtures it needs in the test's own module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from telethon import TelegramClient
from telethon.crypto import rsa as telethon_rsa
from telethon.sessions import StringSession

from sandbox.mtproto import MTProtoServer, ServerKey

API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"
PHONE, CODE = "+15550000001", "12345"
PHONE_2FA, PASSWORD = "+15550000002", "hunter2"
MTPROXY_SECRET = bytes(range(16))


class _Loggers(dict):
    """What Telethon's network classes take as `loggers`: a logger for any module name."""

    def __missing__(self, name: str) -> logging.Logger:
        return logging.getLogger(name)


LOGGERS = _Loggers()


def run(coroutine: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


@pytest.fixture(scope="session")
def server_key() -> ServerKey:
    """One RSA key pair for the test session, known to Telethon as a current (RSA_PAD-era) key."""
    key = ServerKey()
    telethon_rsa.add_key(key.public_pem, old=False)
    return key


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key, mtproxy_secret=MTPROXY_SECRET) as running:
        running.add_account(PHONE, code=CODE, first_name="Ann", last_name="Lee", username="ann")
        yield running


def make_client(server: MTProtoServer, session: str = "", **options: Any) -> TelegramClient:
    """A real Telethon client, pointed at the server before anything can dial Telegram."""
    string_session = StringSession(session or None)
    string_session.set_dc(server.dc_id, server.host, server.port)
    settings: dict[str, Any] = {
        "timeout": 3,
        "connection_retries": 1,
        "retry_delay": 0.1,
        "request_retries": 1,
        "flood_sleep_threshold": 0,
    }
    settings.update(options)
    return TelegramClient(string_session, API_ID, API_HASH, **settings)


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


FIXTURES = (server_key, server)
