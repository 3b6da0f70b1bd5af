"""What the board's Mini App tests share: a stub of Telegram's `telegram-web-app.js`, initData signed the way
Telegram signs it, and the board's aiohttp app served for real on 127.0.0.1 from a background event loop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.engine import Engine

from board.service import BoardService, InviteSent
from celery_app.crypto import SecretBox
from config import BoardLimits
from database.engine import open_database
from tests.support.stack import TEST_SECRET_KEY

STUB_SCRIPT = Path(__file__).resolve().parent / "telegram-web-app.js"
BOT_TOKEN = "123456789:AAH-board-test-token_0123456789abcdef"
THEME = {
    "bg_color": "#17212b",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#232e3c",
}


def sign_init_data(
    user: dict[str, Any] | None, *, bot_token: str = BOT_TOKEN, auth_date: int | None = None, **extra: str
) -> str:
    """initData for `user` as Telegram would hand it to the Mini App of the bot `bot_token` (spec: Web Apps,
    "Validating data received via the Mini App"): secret = HMAC_SHA256(key="WebAppData", msg=bot_token),
    hash = hex HMAC_SHA256(key=secret, msg=the sorted key=value lines)."""
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        **extra,
    }
    if user is not None:
        fields["user"] = json.dumps(user, separators=(",", ":"), ensure_ascii=False)
    check_string = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def tg_user(tg_id: int, language_code: str = "en", first_name: str = "Test") -> dict[str, Any]:
    return {"id": tg_id, "first_name": first_name, "username": f"user{tg_id}", "language_code": language_code}


def board_service(url: str, limits: BoardLimits | None = None) -> tuple[Engine, BoardService]:
    engine, sessions = open_database(url)
    return engine, BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits or BoardLimits())


class InviteRecorder:
    """A `deliver_invite` that remembers what it was given."""

    def __init__(self) -> None:
        self.sent: list[InviteSent] = []

    async def __call__(self, sent: InviteSent) -> None:
        self.sent.append(sent)


class ServedBoard:
    """An aiohttp application served on a free 127.0.0.1 port by an event loop in a background thread."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="served-board", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def run(self, coroutine: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> ServedBoard:
        self._thread.start()

        async def serve() -> str:
            self._runner = web.AppRunner(self._make_app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        self.url = self.run(serve())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> ServedBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
