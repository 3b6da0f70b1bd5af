"""A Bot API stand-in for the tests: the same core behind an aiogram session (for `Dispatcher.feed_update`)
and behind an aiohttp server on 127.0.0.1 (for the real `run.py` with TG_API_SERVER pointing at it).

It records every call the bot makes, keeps the messages it sent or edited (with their keyboards), queues
updates for `getUpdates`, and serves uploaded documents. It copies messages (`copyMessage`, `copyMessages`,
remembering what each copy is of) and can be told to fail calls to a chat (`fail`: 403, or 429 with
retry_after). With `FloodLimits` it enforces Telegram's flood limits as Telegram does: about 30 messages a
second in all and about one a second into a chat (with a short burst), answering more with 429 and a
`retry_after`. `AdminChat` drives it like a person: `send` text, `click` a button by its label, then read what
the bot shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import InputFile
from aiohttp import web

from tests.support.flood import SENDING, FloodControl, FloodLimits

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Fleet", "username": "fleet_test_bot"}
TOKEN = "4242:TEST-token-for-the-stand-in-0123456789"


class ApiFailure(Exception):
    """An error answer the stand-in gives instead of a result (see `BotApiCore.fail`)."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass
class Failure:
    """A rule: calls to `chat_id` (of `methods`, or any) fail `times` times (None: always) with `code`."""

    chat_id: int
    code: int
    description: str
    times: int | None
    retry_after: int | None
    methods: frozenset[str] | None


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 200  # what the stand-in answered: 200, or the error code it refused the call with

    @property
    def ok(self) -> bool:
        return self.status == 200


class BotApiCore:
    """The behaviour of the Bot API methods the bot uses, and a record of every call."""

    def __init__(self, limits: FloodLimits | None = None) -> None:
        self.flood = FloodControl(limits) if limits else None
        self.flood_refusals = 0
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.uploads: list[tuple[str, str, bytes]] = []  # (method, file name, content) of each file the bot sent
        self.failures: list[Failure] = []
        self._message_ids = itertools.count(1000)
        self._update_ids = itertools.count(1)
        self._lock = threading.Condition()

    def fail(
        self,
        chat_id: int,
        code: int = 403,
        description: str = "Forbidden: bot was blocked by the user",
        times: int | None = None,
        retry_after: int | None = None,
        methods: tuple[str, ...] | None = None,
    ) -> None:
        """Make calls to `chat_id` fail: 403 (blocked the bot) by default, or e.g. 429 with `retry_after`."""
        with self._lock:
            self.failures.append(
                Failure(chat_id, code, description, times, retry_after, frozenset(methods) if methods else None)
            )

    def _flood(self, method: str, params: dict[str, Any]) -> ApiFailure | None:
        """Under the lock: a 429 if this call would exceed a flood limit (and then it counts for nothing)."""
        if self.flood is None or method not in SENDING:
            return None
        retry_after = self.flood.refuse(str(params.get("chat_id")))
        if retry_after is None:
            return None
        self.flood_refusals += 1
        return ApiFailure(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    def _failure_for(self, method: str, params: dict[str, Any]) -> ApiFailure | None:
        with self._lock:
            for rule in self.failures:
                if str(params.get("chat_id")) != str(rule.chat_id):
                    continue
                if rule.methods is not None and method not in rule.methods:
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                return ApiFailure(rule.code, rule.description, rule.retry_after)
            return self._flood(method, params)

    # --- updates in

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self._lock.notify_all()
        return update

    def take_updates(self, offset: int, timeout: float, limit: int = 100) -> list[dict[str, Any]]:
        """As getUpdates: updates from `offset` on (the ones before it are confirmed, and forgotten), at most
        `limit`, waiting up to `timeout` for one to arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                ready = [u for u in self.updates if u["update_id"] >= offset]
                if ready or time.monotonic() >= deadline:
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                    return ready[: max(1, min(limit, 100))]
                self._lock.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    # --- calls

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        if isinstance(params.get("reply_markup"), str):
            params["reply_markup"] = json.loads(params["reply_markup"])
        call = Call(method, params)
        failure = self._failure_for(method, params)
        with self._lock:  # a call is seen only with its effect: a sent message is stored when its call shows
            if failure is not None:
                call.status = failure.code
                self.calls.append(call)
                self._lock.notify_all()
                raise failure
            result = self._respond(method, params)
            self.calls.append(call)
            self._lock.notify_all()
            return result

    def _respond(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "copyMessage":
            copied = self._copy(int(params["chat_id"]), params["from_chat_id"], int(params["message_id"]))
            return {"message_id": copied}
        if method == "copyMessages":
            ids = params["message_ids"]
            ids = json.loads(ids) if isinstance(ids, str) else ids
            return [{"message_id": self._copy(int(params["chat_id"]), params["from_chat_id"], int(i))} for i in ids]
        if method == "editMessageCaption":
            return self._edit(int(params["chat_id"]), int(params["message_id"]), {"caption": params.get("caption", "")})
        if method == "editMessageReplyMarkup":
            return self._edit(int(params["chat_id"]), int(params["message_id"]), {"reply_markup": None}, params)
        if method in ("sendMessage", "sendDocument"):
            return self._store(int(params["chat_id"]), next(self._message_ids), params)
        if method == "editMessageText":
            return self._store(int(params["chat_id"]), int(params["message_id"]), params)
        if method == "getFile":
            return {
                "file_id": params["file_id"],
                "file_unique_id": params["file_id"],
                "file_path": f"documents/{params['file_id']}",
            }
        return True

    def _store(self, chat_id: int, message_id: int, params: dict[str, Any]) -> dict[str, Any]:
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            "text": params.get("text", ""),
        }
        markup = params.get("reply_markup")
        if markup and "inline_keyboard" in markup:  # a sent Message carries only inline keyboards
            message["reply_markup"] = markup
        self.messages[(chat_id, message_id)] = message
        return message

    def _copy(self, chat_id: int, from_chat_id: Any, message_id: int) -> int:
        new_id = next(self._message_ids)
        with self._lock:
            self.messages[(chat_id, new_id)] = {
                "message_id": new_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT_USER,
                "copy_of": {"chat_id": int(from_chat_id), "message_id": message_id},
                "text": "",
            }
        return new_id

    def _edit(
        self, chat_id: int, message_id: int, changes: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any] | bool:
        """Edit a message the stand-in knows (returning it, as Telegram does); True for one it does not know."""
        with self._lock:
            message = self.messages.get((chat_id, message_id))
            if message is None:
                return True
            message.update(changes)
            if params is not None and "inline_keyboard" in (params.get("reply_markup") or {}):
                message["reply_markup"] = params["reply_markup"]
            elif "reply_markup" in changes:
                message.pop("reply_markup", None)
            return message

    def wait_for(
        self, predicate: Callable[[Call], bool], timeout: float = 10.0, after: int = 0, refused: bool = False
    ) -> Call:
        """The first call (from index `after`) matching `predicate` that the stand-in answered with a result (or,
        with `refused`, any call), waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for call in self.calls[after:]:
                    if (call.ok or refused) and predicate(call):
                        return call
                if time.monotonic() >= deadline:
                    made = [(c.method, str(c.params.get("text", ""))[:60]) for c in self.calls[after:]]
                    raise AssertionError(f"no matching Bot API call within {timeout:g}s; calls: {made}")
                self._lock.wait(0.05)

    def calls_to(self, chat_id: int, after: int = 0) -> list[Call]:
        """Calls to a chat that the stand-in answered with a result (not with an error)."""
        return [c for c in self.calls[after:] if c.ok and str(c.params.get("chat_id")) == str(chat_id)]

    def refused_to(self, chat_id: int, after: int = 0) -> list[Call]:
        """Calls to a chat that the stand-in refused (403, 429, …)."""
        return [c for c in self.calls[after:] if not c.ok and str(c.params.get("chat_id")) == str(chat_id)]


class RecordingSession(BaseSession):
    """An aiogram session answering from a `BotApiCore` (no network at all)."""

    def __init__(self, core: BotApiCore) -> None:
        super().__init__()
        self.core = core

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        params: dict[str, Any] = {}
        files: dict[str, InputFile] = {}
        for key, value in method.model_dump(warnings=False).items():  # as aiogram's own sessions prepare them
            prepared = self.prepare_value(value, bot=bot, files=files)
            if prepared is not None:
                params[key] = prepared
        for upload in files.values():  # what a multipart request would carry (a BufferedInputFile's bytes)
            self.core.uploads.append((method.__api_method__, upload.filename or "", getattr(upload, "data", b"")))
        try:
            result = self.core.handle(method.__api_method__, params)
        except ApiFailure as failure:
            self.check_response(bot=bot, method=method, status_code=failure.code, content=json.dumps(failure.payload()))
            raise AssertionError("check_response raises for an error answer") from failure
        response = self.check_response(
            bot=bot, method=method, status_code=200, content=json.dumps({"ok": True, "result": result})
        )
        return response.result

    async def close(self) -> None:
        return None

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> Any:
        content = self.core.files.get(url.rsplit("/", 1)[-1], b"")
        yield content


class BotApiStandIn:
    """The core served over HTTP on 127.0.0.1 (set TG_API_SERVER to `url`)."""

    def __init__(self, core: BotApiCore | None = None, limits: FloodLimits | None = None) -> None:
        self.core = core or BotApiCore(limits)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BotApiStandIn:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("Bot API stand-in did not start")
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runner = runner
        self._started.set()
        self._loop.run_forever()

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            timeout = min(float(params.get("timeout") or 0), 2.0)
            limit = int(params.get("limit") or 100)
            result = await asyncio.to_thread(self.core.take_updates, offset, timeout, limit)
            return web.json_response({"ok": True, "result": result})
        try:
            result = self.core.handle(method, dict(params))
        except ApiFailure as failure:
            return web.json_response(failure.payload(), status=failure.code)
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["path"].rsplit("/", 1)[-1]
        return web.Response(body=self.core.files.get(name, b""))

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --- updates ------------------------------------------------------------------------------------------------


def user(user_id: int, language: str = "ru") -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": f"User{user_id}",
        "username": f"user{user_id}",
        "language_code": language,
    }


_incoming_ids = itertools.count(1)


def message_update(
    sender: dict[str, Any], text: str | None = None, document: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": next(_incoming_ids),
        "date": int(time.time()),
        "chat": {"id": sender["id"], "type": "private"},
        "from": sender,
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    if document is not None:
        message["document"] = document
    return {"message": message}


def callback_update(sender: dict[str, Any], data: str, message: dict[str, Any] | None) -> dict[str, Any]:
    query: dict[str, Any] = {"id": str(next(_incoming_ids)), "from": sender, "chat_instance": "1", "data": data}
    if message is not None:
        query["message"] = message
    return {"callback_query": query}


class AdminChat:
    """One person talking to the bot through the stand-in: `send`, `click`, and what the bot last showed."""

    def __init__(
        self, core: BotApiCore, deliver: Callable[[dict[str, Any]], Any], user_id: int, language: str = "ru"
    ) -> None:
        self.core = core
        self.deliver = deliver
        self.user = user(user_id, language)

    @property
    def id(self) -> int:
        return int(self.user["id"])

    def screen(self) -> dict[str, Any]:
        """The newest message the bot sent or edited in this chat."""
        mine = [c for c in self.core.calls_to(self.id) if c.method in ("sendMessage", "editMessageText")]
        if not mine:
            raise AssertionError("the bot has shown nothing in this chat")
        last = mine[-1]
        message_id = last.params.get("message_id")
        if message_id is None:
            candidates = [m for (chat, _), m in self.core.messages.items() if chat == self.id]
            return max(candidates, key=lambda m: m["message_id"])
        return self.core.messages[(self.id, int(message_id))]

    def text(self) -> str:
        return str(self.screen()["text"])

    def buttons(self) -> list[str]:
        markup = self.screen().get("reply_markup") or {}
        return [b["text"] for row in markup.get("inline_keyboard", []) for b in row]

    def _mark(self) -> int:
        return len(self.core.calls)

    def _await_reply(self, mark: int, timeout: float, to_button: bool = False) -> Call:
        """The bot's first reply after `mark`: a message in this chat (or, to a button, also its answer)."""
        return self.core.wait_for(
            lambda c: (
                (c.method in ("sendMessage", "editMessageText") and str(c.params.get("chat_id")) == str(self.id))
                or (to_button and c.method == "answerCallbackQuery")
            ),
            timeout,
            after=mark,
        )

    def send(self, text: str | None = None, document: dict[str, Any] | None = None, timeout: float = 10.0) -> Call:
        mark = self._mark()
        self.deliver(message_update(self.user, text, document))
        return self._await_reply(mark, timeout)

    def press(self, data: str, timeout: float = 10.0) -> Call:
        """Send raw callback data (what a forged button would carry)."""
        mark = self._mark()
        self.deliver(callback_update(self.user, data, self.screen() if self._has_screen() else None))
        return self._await_reply(mark, timeout, to_button=True)

    def _has_screen(self) -> bool:
        return any(c.method in ("sendMessage", "editMessageText") for c in self.core.calls_to(self.id))

    def click(self, label: str, timeout: float = 10.0) -> Call:
        """Press the button whose text holds `label`, once the screen shows it (a reply still on its way, or the
        tail of the previous step, may be the newest message for a moment), and wait for the bot's answer."""
        message, button = self._button(label, timeout)
        mark = self._mark()
        self.deliver(callback_update(self.user, button["callback_data"], message))
        return self.core.wait_for(
            lambda c: c.method in ("editMessageText", "sendMessage") and str(c.params.get("chat_id")) == str(self.id),
            timeout,
            after=mark,
        )

    def _button(self, label: str, timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.screen()
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if label in button["text"]:
                        return message, button
            if time.monotonic() >= deadline:
                raise AssertionError(f"no button {label!r} on screen; buttons: {self.buttons()}")
            time.sleep(0.02)
