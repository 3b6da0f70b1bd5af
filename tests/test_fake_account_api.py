"""The fake Telegram's account API (`tests/support/fake_account_api.py`) keeps to Telethon's signatures,
refuses what it does not know, and shares each account's state through Redis."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from telethon import TelegramClient, errors

from tests.support import operations_harness
from tests.support.fake_account_state import reset_accounts
from tests.support.fake_telegram import FakeClient
from tests.support.operations_harness import JPEG, PHONE, Telegram, new_client, operate, seen

# The harness's fixture, requested by name.
telegram = operations_harness.telegram


@pytest.mark.parametrize("name", ["__call__", "upload_file", "send_message", "get_messages"])
def test_the_fakes_account_api_has_telethons_signatures(name: str) -> None:
    real, fake = getattr(TelegramClient, name), getattr(FakeClient, name)
    assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(fake)
    real_params = list(inspect.signature(real).parameters.values())[1:]
    fake_params = list(inspect.signature(fake).parameters.values())[1:]
    assert [(p.name, p.kind) for p in fake_params] == [(p.name, p.kind) for p in real_params]


def test_the_fake_refuses_what_it_does_not_know_and_needs_a_connection(telegram: Telegram) -> None:
    from telethon.tl import functions

    telegram.account()

    async def run() -> None:
        client = new_client()
        with pytest.raises(ConnectionError):
            await client(functions.account.GetPasswordRequest())
        await client.connect()
        with pytest.raises(errors.RPCError):
            await client(functions.account.DeleteAccountRequest(reason="no"))
        other = await client.send_message(424242, "hello")  # not @SpamBot: the events fake's chats
        assert other.out and "send_message:SpamBot" not in seen()
        await client.disconnect()

    asyncio.run(run())


def test_the_accounts_state_is_shared_through_the_fakes_redis(
    telegram: Telegram, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis import Redis

    monkeypatch.setenv("FAKE_TELEGRAM_REDIS", redis_url)
    telegram.account(sessions=2, password="old-secret")
    operate("profile", {"first_name": "Ann", "photo": JPEG})
    operate("terminate-others")
    reset_accounts()  # nothing is kept in this process: another worker process would see the same
    stored = json.loads(Redis.from_url(redis_url).get(f"fake:account:{PHONE}"))
    assert (stored["first_name"], stored["photos"], stored["sessions"]) == ("Ann", 1, [])
    telegram.account(sessions=5)  # the stored state wins over a changed script
    assert operate("sessions")["sessions"][0]["current"] and len(operate("sessions")["sessions"]) == 1
    assert operate("2fa", {})["has_password"]
