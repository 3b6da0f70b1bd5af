"""End to end: the real `run.py` against a Bot API stand-in on 127.0.0.1, with real backend and worker."""

from __future__ import annotations

import hashlib
import json
import signal
import urllib.request
from collections.abc import Iterator

import pytest
from redis import Redis

from celery_app import keys
from scripts.embedded_redis import free_port
from tests.support.bot_api import TOKEN, BotApiStandIn, message_update
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import Script, import_account, online

pytestmark = pytest.mark.processes
ADMIN, STRANGER = 5001, 6002


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    stand_in = BotApiStandIn().start()
    yield stand_in
    stand_in.stop()


def start_bot(stack: Stack, api: BotApiStandIn, **env: str):
    bot = stack.spawn(
        "run.py", env={"TG_BOT_TOKEN": TOKEN, "ADMIN_IDS": str(ADMIN), "TG_API_SERVER": api.url, **env}, log_name="bot"
    )
    api.core.wait_for(lambda c: c.method == "setMyCommands" and c.params.get("language_code") is None, 30)
    return bot


def test_admin_starts_an_account_from_the_menus(stack: Stack, api: BotApiStandIn, telegram: Script) -> None:
    stack.start_backend()
    stack.start_worker("fra-1", WORKER_ADDRESS="203.0.113.7")
    online(stack, "fra-1")
    import_account(stack, "fra-1", "+79991234567")
    bot = start_bot(stack, api)
    commands = {
        c.params.get("language_code"): json.loads(c.params["commands"])
        for c in api.core.calls
        if c.method == "setMyCommands"
    }
    assert commands["en"][0] == {"command": "start", "description": "Main menu"}
    assert commands["ru"][0] == {"command": "start", "description": "Главное меню"}

    admin = api_chat(api, ADMIN)
    admin.send("/start")
    assert "Управление флотом" in admin.text()
    admin.click("Воркеры")
    assert "🟢 fra-1 · 0/1" in admin.buttons()
    admin.click("fra-1")
    assert "203.0.113.7" in admin.text() and "🟢 Онлайн" in admin.text()
    admin.click("Аккаунты")
    admin.click("+7 *** ***-45-67")
    assert "⚪ остановлен" in admin.text()
    mark = len(api.core.calls)
    admin.click("Запустить")
    edits = lambda: [c.params["text"] for c in api.core.calls[mark:] if c.method == "editMessageText"]  # noqa: E731
    wait_until(lambda: any("🟢 работает" in text for text in edits()), 45, message="card shows running")
    assert "⏳ запускается…" in edits()[0]  # shown at once, before the outcome
    assert "@user4567" in admin.text() and admin.buttons()[0] == "⏹ Остановить"
    mark = len(api.core.calls)
    admin.click("Остановить")
    # The outcome, however long a busy machine takes to get there (like the start above): not a time limit.
    wait_until(lambda: any("⚪ остановлен" in text for text in edits()), 90, message="card shows stopped")
    wait_until(lambda: "⚪ остановлен" in admin.text(), 30, message="the card's last text shows stopped")
    assert bot.poll() is None


def api_chat(api: BotApiStandIn, user_id: int, language: str = "ru"):
    from tests.support.bot_api import AdminChat

    return AdminChat(api.core, api.core.push, user_id, language)


def test_strangers_and_garbage_change_nothing(stack: Stack, api: BotApiStandIn) -> None:
    bot = start_bot(stack, api)
    stranger = api_chat(api, STRANGER)
    assert stranger.send("/start").params["text"] == "⛔ Этот бот только для администраторов."
    mark = len(api.core.calls)
    api.core.push(message_update(stranger.user, "/workers"))
    api.core.push({"callback_query": {"id": "9", "from": stranger.user, "chat_instance": "1", "data": "m:workers"}})
    admin = api_chat(api, ADMIN, "en")
    admin.send("/start")
    assert [c for c in api.core.calls[mark:] if str(c.params.get("chat_id")) == str(STRANGER)] == []
    for data in ("garbage", "a:1:zz", "w:999999:off", "mv:1:2"):
        assert admin.press(data).method == "answerCallbackQuery"
    assert admin.send("/cancel").params["text"] == "Nothing to cancel."
    assert bot.poll() is None
    assert "Traceback" not in stack.log_of(bot)


def test_admins_are_alerted_when_a_worker_drops(stack: Stack, api: BotApiStandIn) -> None:
    stack.start_backend(interval=0.5)
    worker = stack.start_worker("edge-1")
    online(stack, "edge-1")
    start_bot(stack, api)
    admin = api_chat(api, ADMIN)
    admin.send("/start")
    worker.send_signal(signal.SIGKILL)
    alert = api.core.wait_for(
        lambda c: c.method == "sendMessage" and "Воркер <b>edge-1</b> оффлайн" in c.params.get("text", ""), 20
    )
    assert str(alert.params["chat_id"]) == str(ADMIN)
    redis = Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    wait_until(lambda: redis.hget(keys.ALERTS_SENT, "worker_offline") == "1", 10, message="the alert counted")


def test_webhook_mode_takes_updates_on_its_listener(stack: Stack, api: BotApiStandIn) -> None:
    port = free_port()
    url = "https://bot.example.invalid/tg/hook"
    start_bot(stack, api, WEBHOOK_URL=url, WEBHOOK_LISTEN=f"127.0.0.1:{port}")
    registered = api.core.wait_for(lambda c: c.method == "setWebhook", 10)
    assert registered.params["url"] == url
    secret = hashlib.sha256(TOKEN.encode()).hexdigest()[:32]
    update = {
        "update_id": 1,
        **message_update({"id": ADMIN, "is_bot": False, "first_name": "A", "language_code": "en"}, "/start"),
    }
    mark = len(api.core.calls)

    def post(token: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/tg/hook",
            data=json.dumps(update).encode(),
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": token},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    assert post("wrong") == 401
    assert post(secret) == 200
    reply = api.core.wait_for(lambda c: c.method == "sendMessage", 10, after=mark)
    assert "Fleet control" in reply.params["text"]


def test_a_session_file_sent_as_a_document_is_imported(stack: Stack, api: BotApiStandIn, tmp_path) -> None:
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession

    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    start_bot(stack, api)
    path = tmp_path / "acc.session"
    session = SQLiteSession(str(path))
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(bytes(range(256)))
    session.save()
    session.close()
    api.core.files["doc1"] = path.read_bytes()
    admin = api_chat(api, ADMIN)
    admin.send("/add")
    admin.click("w1")
    admin.click("Импорт сессии")
    admin.send("+79990001122")
    admin.send("12345")
    admin.send("0123456789abcdef0123456789abcdef")
    admin.send(
        document={
            "file_id": "doc1",
            "file_unique_id": "doc1",
            "file_name": "acc.session",
            "file_size": path.stat().st_size,
        }
    )
    api.core.wait_for(lambda c: c.method == "sendMessage" and "✅ Аккаунт добавлен" in c.params.get("text", ""), 15)
    accounts = stack.cli_json("accounts", "list")
    assert [a["phone"] for a in accounts] == ["+7 *** ***-11-22"] and accounts[0]["has_session"]
    deleted = [c for c in api.core.calls if c.method == "deleteMessage"]
    assert len(deleted) >= 2  # the API hash and the session file left the chat


def test_an_admin_logs_an_account_in_with_code_and_2fa(stack: Stack, api: BotApiStandIn, telegram) -> None:
    telegram.set("+79995550011", login={"code": "24680", "password": "s3cret-pass"})
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    start_bot(stack, api)
    admin = api_chat(api, ADMIN)
    admin.send("/add")
    admin.click("w1")
    admin.click("Войти по коду")
    admin.send("+7 999 555-00-11")
    admin.send("12345")
    admin.send("0123456789abcdef0123456789abcdef")
    prompt = api.core.wait_for(lambda c: c.method == "sendMessage" and "через пробелы" in c.params.get("text", ""), 20)
    assert "1 2 3 4 5" in prompt.params["text"]
    admin.send("1 1 1 1 1")
    api.core.wait_for(lambda c: c.method == "sendMessage" and "Неверный код" in c.params.get("text", ""), 15)
    admin.send("2 4 6 8 0")
    api.core.wait_for(lambda c: c.method == "sendMessage" and "двухэтапная проверка" in c.params.get("text", ""), 15)
    mark = len(api.core.calls)
    password_message = admin.send("s3cret-pass")
    done = api.core.wait_for(
        lambda c: c.method == "sendMessage" and "✅ Аккаунт добавлен" in c.params.get("text", ""), 20
    )
    assert "+7 *** ***-00-11" in done.params["text"] and "@user0011" in done.params["text"]
    deletions = [c for c in api.core.calls[mark:] if c.method == "deleteMessage"]
    assert deletions, "the message with the password was not deleted"
    assert password_message is not None
    # The bot never repeats the password (the stand-in records only what the bot sent).
    assert "s3cret-pass" not in json.dumps([c.params for c in api.core.calls])
