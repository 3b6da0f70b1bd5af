"""The bot's operations and plugins end to end: the real dispatcher in-process over the recording Bot API, a
real backend and worker process (fake Telegram with its account API), Redis and the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.support.bot_api import Call, message_update
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import add_operations
from tests.support.fake_password import password_matches
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import import_account, online
from tests.test_manager import Script

pytestmark = pytest.mark.processes
ADMIN = 111
WAIT = 90.0  # real processes on a busy two-core machine
PHONE = "+15550004001"
LABEL = "+1 *** ***-40-01"


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "greeter.py").write_text(
        'NAME = "greeter"\nDESCRIPTION = "Says hello back"\n\n\ndef setup(client, context):\n    return None\n'
    )
    return folder


@pytest.fixture
def running(stack: Stack, telegram: Script, plugins_dir: Path) -> Iterator[tuple[BotHarness, int]]:
    """A backend and worker w1 on the fake Telegram, one account on it (its id), and the bot in this process."""
    telegram.set(PHONE, account={"sessions": 2, "taken": ["somebody"], "spam": "free"})
    stack.env["PLUGINS_DIR"] = str(plugins_dir)
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", PHONE)
    harness = BotHarness(stack.env["REDIS_URL"], stack.env["DATABASE_URL"], frozenset({ADMIN}))
    add_operations(harness, stack.env["REDIS_URL"], str(plugins_dir))
    yield harness, account_id
    harness.close()


def fake_account(redis: Redis, phone: str) -> dict[str, Any]:
    return json.loads(redis.get(f"fake:account:{phone}") or "{}")


def wait_for_text(harness: BotHarness, mark: int, needle: str, method: str = "editMessageText") -> Call:
    return harness.core.wait_for(
        lambda c: c.method == method and needle in str(c.params.get("text", "")), WAIT, after=mark
    )


def open_card(harness: BotHarness) -> Any:
    chat = harness.chat(ADMIN)
    chat.send("/accounts")
    chat.click(LABEL)
    return chat


def send_secret(harness: BotHarness, chat: Any, text: str) -> None:
    update = message_update(chat.user, text)
    mark = len(harness.core.calls)
    harness.deliver(update)
    message_id = update["message"]["message_id"]
    harness.core.wait_for(
        lambda c: c.method == "deleteMessage" and int(c.params.get("message_id", 0)) == message_id, WAIT, after=mark
    )
    harness.core.wait_for(lambda c: c.method == "sendMessage", WAIT, after=mark)


def test_check_password_and_profile_from_the_card_on_a_real_worker(
    running: tuple[BotHarness, int], stack: Stack, redis_client: Redis
) -> None:
    harness, _account_id = running
    assert harness.poll_alerts() == 0
    chat = open_card(harness)
    assert "🩺 Ещё не проверялся" in chat.text()

    mark = len(harness.core.calls)
    chat.click("Проверить")
    done = wait_for_text(harness, mark, "🩺 Проверка: ✅ в порядке — спам: ограничений нет · 2 других сеанса")
    assert "🩺 Проверка: ✅ в порядке · " in done.params["text"]

    # @SpamBot now reports limits: the next check is worse, and the admins hear of it.
    state = fake_account(redis_client, PHONE)
    state["spam"] = "limited"
    redis_client.set(f"fake:account:{PHONE}", json.dumps(state))
    mark = len(harness.core.calls)
    chat.click("Проверить")
    wait_for_text(harness, mark, "🩺 Проверка: ⚠️ ограничен (спам)")
    assert harness.poll_alerts() >= 1
    alert = harness.core.wait_for(lambda c: c.method == "sendMessage" and "хуже прежней" in c.params["text"], WAIT)
    assert f"Аккаунт {LABEL} (#" in alert.params["text"] and "✅ в порядке → ⚠️ ограничен (спам)" in alert.params["text"]

    # A cloud password: none yet, then set through the form; each message deleted, nothing echoed.
    chat = open_card(harness)  # the alert is the newest message in the chat now
    mark = len(harness.core.calls)
    chat.click("🔐 Пароль")
    wait_for_text(harness, mark, "🔐 Облачного пароля нет.")
    wait_until(lambda: "🔑 Задать или сменить пароль" in chat.buttons(), WAIT, message="the password button")
    chat.click("Задать или сменить пароль")
    chat.click("Пароля нет")
    send_secret(harness, chat, "s3cret-Bot-pw")
    mark = len(harness.core.calls)
    send_secret(harness, chat, "s3cret-Bot-pw")
    wait_for_text(harness, mark, "🔐 Облачный пароль изменён.")
    assert password_matches(fake_account(redis_client, PHONE), "s3cret-Bot-pw")
    # The wrong current password: Telegram's refusal, passed on; the password stays.
    chat.click("🔐 Пароль")
    wait_until(lambda: "🔑 Задать или сменить пароль" in chat.buttons(), WAIT, message="the password button")
    chat.click("Задать или сменить пароль")
    send_secret(harness, chat, "not-the-pw")
    send_secret(harness, chat, "next-Bot-pw")
    mark = len(harness.core.calls)
    send_secret(harness, chat, "next-Bot-pw")
    wait_for_text(harness, mark, "❌ Облачный пароль: текущий облачный пароль неверен")
    assert password_matches(fake_account(redis_client, PHONE), "s3cret-Bot-pw")

    # A username another account holds: Telegram's refusal in the admin's words, nothing changed.
    chat.click("Профиль")
    chat.click("Имя пользователя")
    mark = len(harness.core.calls)
    chat.send("@somebody")
    wait_for_text(harness, mark, "❌ Профиль: имя пользователя @somebody уже занято")
    assert fake_account(redis_client, PHONE).get("username") != "somebody"
    chat.click("Профиль")
    chat.click("О себе")
    mark = len(harness.core.calls)
    chat.send("Hello from the fleet")
    wait_for_text(harness, mark, "👤 Профиль изменён: «о себе»")
    assert fake_account(redis_client, PHONE)["bio"] == "Hello from the fleet"

    output = json.dumps([c.params for c in harness.core.calls], ensure_ascii=False)
    for secret in ("s3cret-Bot-pw", "not-the-pw", "next-Bot-pw"):
        assert secret not in output
    logs = "".join(stack.log_of(process) for process in stack.processes)
    assert "s3cret-Bot-pw" not in logs and "next-Bot-pw" not in logs


def test_check_all_and_a_plugin_on_a_running_account(running: tuple[BotHarness, int], stack: Stack) -> None:
    harness, account_id = running
    import_account(stack, "w1", "+15550004002")
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_until(
        lambda: stack.cli_json("accounts", "show", str(account_id))["status"] == "running",
        WAIT,
        message="the account runs",
    )
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("w1")
    chat.click("Аккаунты")
    chat.click("Проверить все")
    assert "🩺 Проверить 2 аккаунта на воркере <b>w1</b>?" in chat.text()
    mark = len(harness.core.calls)
    chat.click("Да, проверить")
    final = wait_for_text(harness, mark, "✅ Готово.")
    assert "Проверка: готово 2/2 · ✅ 2 · ⚠️ 0 · ❌ 0" in final.params["text"]
    assert not [c for c in harness.core.calls_to(ADMIN, after=mark) if c.method == "sendMessage"]

    chat.click("Назад")
    chat.click(LABEL)
    chat.click("Плагины")
    chat.click("greeter")
    chat.click("По умолчанию")
    assert "✅ Плагин <b>greeter</b> включён." in chat.text()

    def shown_running() -> bool:
        chat.click("Назад")
        if "🧩 Плагины: 🟢 greeter" in chat.text():
            return True
        chat.click("Плагины")
        return False

    wait_until(shown_running, WAIT, interval=1.0, message="the card shows the plugin running")
