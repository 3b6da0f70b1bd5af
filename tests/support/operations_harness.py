"""What the tests of the account operations share: the fake Telegram's per-phone script (`Telegram`, the
`telegram` fixture), clients of the fake, running one operation as the worker does, and test images.

The `telegram` fixture is not registered globally: a test module binds it (`telegram = operations_harness.telegram`).
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_app.contract import DeviceIdentity
from tests.support import fake_telegram
from tests.support.fake_account_state import account_state, reset_accounts
from tests.support.fake_telegram import FakeClient, factory, session_for
from worker import operations
from worker.clients import ClientSpec
from worker.operation_failures import OperationFailed
from worker.operations import perform

API_HASH = "0123456789abcdef0123456789abcdef"
PHONE = "+15550001234"
PIXEL = DeviceIdentity(device_model="Pixel 8", system_version="SDK 34", app_version="10.14.5")


def png(width: int, height: int) -> bytes:
    """A real, valid PNG image of that size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


class Telegram:
    """The fake's script (per-phone behaviour), written where the fake reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        path.write_text("{}")

    def account(self, phone: str = PHONE, connect: str = "ok", **account: Any) -> None:
        self.data[phone] = {"connect": connect, "account": account}
        self.path.write_text(json.dumps(self.data))


@pytest.fixture
def telegram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Telegram]:
    monkeypatch.setenv("FAKE_TELEGRAM_SCRIPT", str(tmp_path / "telegram.json"))
    monkeypatch.delenv("FAKE_TELEGRAM_REDIS", raising=False)
    monkeypatch.setattr(fake_telegram, "_redis_client", None)
    monkeypatch.setattr(operations, "SPAMBOT_POLL", 0.02)
    reset_accounts()
    yield Telegram(tmp_path / "telegram.json")
    reset_accounts()


def new_client(phone: str = PHONE) -> FakeClient:
    return factory(ClientSpec(7, phone, 12345, API_HASH, session_for(phone), device=PIXEL))


def operate(name: str, params: dict[str, Any] | None = None, phone: str = PHONE, client: Any = None) -> dict[str, Any]:
    """Connect a client, run one operation, disconnect: as the worker does for an account not running."""

    async def run() -> dict[str, Any]:
        used = client or new_client(phone)
        await used.connect()
        try:
            return await perform(used, name, params or {})
        finally:
            await used.disconnect()

    return asyncio.run(run())


def failure(name: str, params: dict[str, Any] | None = None, phone: str = PHONE) -> OperationFailed:
    with pytest.raises(OperationFailed) as caught:
        operate(name, params, phone)
    return caught.value


def seen(phone: str = PHONE) -> list[str]:
    """The calls that reached the fake Telegram for this account."""
    return list(account_state(phone)["log"])
