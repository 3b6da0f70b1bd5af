"""The bot's account operations and plugins through `Dispatcher.feed_update`, with real Redis, the database and
the real operations and plugins services; a simulated worker (`tests.support.bot_ops`) answers operations the
way `worker.operator` writes them, so these tests follow the bot's polling, rendering and pacing. The real
worker processes run them in `test_bot_operations_e2e.py`; what the bot says, as pure functions, is checked in
`test_bot_operation_texts.py`."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from celery_app import keys
from celery_app.operations import OperationName, OperationStatus
from celery_app.plugin_config import PluginStatus
from common.details import detail
from database.accounts import get_account
from database.models import Account, AccountOperation, AccountPlugin, utcnow
from tests.support.bot_api import Call, message_update
from tests.support.bot_harness import BotHarness
from tests.support.bot_ops import Answer, SimulatedWorker, add_operations, check_report
from tests.support.fake_telegram import session_for
from tests.support.stack import wait_until

ADMIN = 111
API_HASH = "0123456789abcdef0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WAIT = 30.0  # generous: a busy two-core machine


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    """An operator's own plugin beside the shipped ones: any configuration (even {}) fits it."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "greeter.py").write_text(
        'NAME = "greeter"\nDESCRIPTION = "Says hello back"\n\n\ndef setup(client, context):\n    return None\n'
    )
    return folder


@pytest.fixture
def harness(redis_url: str, sqlite_url: str, plugins_dir: Path) -> Iterator[BotHarness]:
    running = add_operations(BotHarness(redis_url, sqlite_url, frozenset({ADMIN})), redis_url, str(plugins_dir))
    yield running
    running.close()


@pytest.fixture
def start_worker(harness: BotHarness) -> Iterator[Callable[..., SimulatedWorker]]:
    started: list[SimulatedWorker] = []

    def start(name: str, responder: Callable[[AccountOperation], Answer | None] | None = None) -> SimulatedWorker:
        harness.services.fleet.add_worker(name, "10.0.0.1", "test")
        accounts = harness.services.accounts
        worker = SimulatedWorker(accounts.redis, accounts.sessions, name, responder)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def import_account(harness: BotHarness, worker: str, phone: str = "+79991234567") -> int:
    view = harness.services.accounts.import_session(
        worker, 12345, API_HASH, session_string=session_for(phone), phone=phone, actor="test"
    )
    return view.id


def params_of(operation: AccountOperation) -> dict[str, Any]:
    return json.loads(operation.params or "{}")


def edits_after(harness: BotHarness, mark: int) -> list[Call]:
    return [c for c in harness.core.calls[mark:] if c.method == "editMessageText"]


def wait_for_text(harness: BotHarness, mark: int, needle: str, method: str = "editMessageText") -> Call:
    return harness.core.wait_for(
        lambda c: c.method == method and needle in str(c.params.get("text", "")), WAIT, after=mark
    )


def open_card(harness: BotHarness, phone_label: str = "+7 *** ***-45-67") -> Any:
    chat = harness.chat(ADMIN)
    chat.send("/accounts")
    chat.click(phone_label)
    return chat


def all_bot_output(harness: BotHarness) -> str:
    return json.dumps([c.params for c in harness.core.calls], ensure_ascii=False)


# --- the card


def test_the_card_shows_the_last_check_and_the_plugins_as_they_run(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker], redis_client: Redis
) -> None:
    worker = start_worker("w1")
    account_id = import_account(harness, "w1")
    import_account(harness, "w1", "+79990000002")
    with harness.services.accounts.sessions.begin() as session:
        account = session.get(Account, account_id)
        assert account is not None
        account.desired_state = "running"
        account.check_verdict = "limited"
        account.checked_at = utcnow() - timedelta(minutes=5, seconds=3)
        account.check_summary = "limited · spam: limited · 2 other sessions"
        account.check_result = json.dumps(
            {"verdict": "limited", "authorized": True, "spam": "limited", "other_sessions": 2}
        )
        for plugin in ("autoreply", "watch", "greeter"):
            session.add(AccountPlugin(account_id=account_id, plugin=plugin, config="{}", actor="test"))
    redis_client.hset(
        keys.plugin_status("w1", account_id),
        mapping={
            "autoreply": PluginStatus("running").to_json(),
            "watch": PluginStatus("failing", 3, "ValueError: boom <x>").to_json(),
        },
    )
    worker.running.add(account_id)
    worker.beat_now()

    chat = open_card(harness)
    text = chat.text()
    assert "🟢 работает" in text
    assert "🩺 Проверка: ⚠️ ограничен (спам) · 5 мин назад — спам: есть ограничения · 2 других сеанса" in text
    assert "🧩 Плагины: 🟢 autoreply, ⚪ greeter (не запущен), ⚠️ watch (сбоит: ValueError: boom &lt;x&gt;)" in text
    buttons = chat.buttons()
    assert buttons[:4] == ["⏹ Остановить", "🔄 Перезапустить", "🔀 Перенести", "🗑 Удалить"]  # the card's own, first
    assert buttons[4:10] == ["🩺 Проверить", "📱 Сеансы", "✂️ Завершить другие", "🔐 Пароль", "👤 Профиль", "🧩 Плагины"]

    # Not running any more: what its worker reported earlier is not shown as a fact.
    worker.running.clear()
    worker.beat_now()
    chat.click("Обновить")
    assert "⚪ autoreply (не запущен), ⚪ greeter (не запущен), ⚪ watch (не запущен)" in chat.text()

    chat.click("Назад")
    chat.click("+7 *** ***-00-02")
    assert "🩺 Ещё не проверялся" in chat.text()
    assert "🧩 Плагины:" not in chat.text()  # none enabled: no line


def test_check_from_the_card_ends_with_the_verdict_and_a_worse_one_alerts(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker]
) -> None:
    verdicts = iter(["ok", "limited"])

    def responder(operation: AccountOperation) -> Answer:
        assert operation.name == OperationName.CHECK
        return Answer(result=check_report(next(verdicts), other_sessions=2), delay=1.0)

    start_worker("w1", responder)
    account_id = import_account(harness, "w1")
    assert harness.poll_alerts() == 0  # the first poll only finds where the log ends
    chat = open_card(harness)

    mark = len(harness.core.calls)
    chat.click("Проверить")
    assert "⏳ Проверка…" in edits_after(harness, mark)[0].params["text"]  # at once, before any result
    done = wait_for_text(harness, mark, "🩺 Проверка: ✅ в порядке — спам: ограничений нет · 2 других сеанса")
    assert "🩺 Проверка: ✅ в порядке · " in done.params["text"]  # the card's own line, from the stored check
    with harness.services.accounts.sessions() as session:
        assert get_account(session, account_id).check_verdict == "ok"
    assert harness.poll_alerts() == 0  # a first verdict is no worse than anything

    mark = len(harness.core.calls)
    chat.click("Проверить")
    wait_for_text(harness, mark, "🩺 Проверка: ⚠️ ограничен (спам) — спам: есть ограничения")
    assert harness.poll_alerts() == 1
    alert = harness.core.wait_for(
        lambda c: c.method == "sendMessage" and "хуже прежней" in c.params.get("text", ""), WAIT, after=mark
    )
    assert alert.params["text"] == (
        f"⚠️ Аккаунт +7 *** ***-45-67 (#{account_id}): проверка хуже прежней: ✅ в порядке → ⚠️ ограничен (спам)"
    )


def test_sessions_show_a_flood_wait_then_the_list_and_ending_them_asks_first(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker]
) -> None:
    now = int(time.time())
    sessions = [
        {"current": True, "device": "Fleet", "app": "Fleet 1.0", "place": "", "last_active": now},
        {
            "current": False,
            "device": "Pixel 7",
            "app": "Telegram Android 10.14",
            "place": "Germany, Berlin",
            "last_active": now - 120,
        },
        {"current": False, "device": "iPhone <15>", "app": "Telegram iOS", "place": "", "last_active": None},
    ]

    def responder(operation: AccountOperation) -> Answer:
        if operation.name == OperationName.SESSIONS:
            return Answer(result={"sessions": sessions}, flood_wait=3.0)
        assert operation.name == OperationName.TERMINATE_OTHERS
        return Answer(result={"terminated": 2})

    start_worker("w1", responder)
    import_account(harness, "w1")
    chat = open_card(harness)
    mark = len(harness.core.calls)
    chat.click("Сеансы")
    flood = wait_for_text(harness, mark, "🐢 Сеансы: Telegram попросил подождать")
    assert "операция продолжится сама" in flood.params["text"]
    listed = wait_for_text(harness, mark, "📱 Других сеансов: 2")
    assert "• Pixel 7 — Telegram Android 10.14 · Germany, Berlin · 2 мин назад" in listed.params["text"]
    assert "• iPhone &lt;15&gt; — Telegram iOS · — · никогда" in listed.params["text"]
    assert "Fleet 1.0" not in listed.params["text"]  # the fleet's own session is not an "other"

    chat.click("Завершить другие")
    assert "Завершить все другие сеансы аккаунта <b>+7 *** ***-45-67</b>?" in chat.text()
    assert chat.buttons() == ["✂️ Да, завершить", "✖️ Отмена"]
    mark = len(harness.core.calls)
    chat.click("Да, завершить")
    wait_for_text(harness, mark, "✂️ Завершено других сеансов: 2")


def send_secret(harness: BotHarness, chat: Any, text: str) -> int:
    """Send a message holding a secret and wait until the bot deleted it; its message id."""
    update = message_update(chat.user, text)
    message_id = update["message"]["message_id"]
    mark = len(harness.core.calls)
    harness.deliver(update)
    harness.core.wait_for(
        lambda c: c.method == "deleteMessage" and int(c.params.get("message_id", 0)) == message_id, WAIT, after=mark
    )
    harness.core.wait_for(lambda c: c.method == "sendMessage", WAIT, after=mark)  # and answered
    return message_id


def test_a_new_cloud_password_is_read_deleted_and_never_shown(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker], redis_client: Redis
) -> None:
    def responder(operation: AccountOperation) -> Answer:
        assert operation.name == OperationName.TWO_FA
        if "new_password_enc" in params_of(operation):
            return Answer(result={"has_password": True, "changed": True})
        return Answer(result={"has_password": True, "changed": False})

    worker = start_worker("w1", responder)
    import_account(harness, "w1")
    chat = open_card(harness, "+7 ***")
    mark = len(harness.core.calls)
    chat.click("Пароль")
    wait_for_text(harness, mark, "🔐 Облачный пароль установлен.")
    wait_until(lambda: "🔑 Задать или сменить пароль" in chat.buttons(), WAIT, message="the password button")
    chat.click("Задать или сменить пароль")
    assert "<b>текущий</b> облачный пароль" in chat.text() and "🆓 Пароля нет" in chat.buttons()

    send_secret(harness, chat, "old-Secret-1")
    assert "<b>новый</b> облачный пароль" in chat.text()
    send_secret(harness, chat, "new-Secret-2")
    assert "<b>ещё раз</b>" in chat.text()
    fsm = " ".join(str(redis_client.get(k)) for k in redis_client.keys(f"{keys.PREFIX}:bot:fsm:*"))
    assert "current_enc" in fsm and "old-Secret-1" not in fsm and "new-Secret-2" not in fsm  # kept encrypted
    send_secret(harness, chat, "new-Secret-typo")
    assert "Пароли не совпали" in chat.text()
    send_secret(harness, chat, "new-Secret-2")
    mark = len(harness.core.calls)
    send_secret(harness, chat, "new-Secret-2")
    wait_for_text(harness, mark, "🔐 Облачный пароль изменён.")

    changes = [op for op in worker.answered if "new_password_enc" in params_of(op)]
    assert len(changes) == 1
    sent = params_of(changes[0])
    box = harness.services.accounts.box
    assert box.decrypt(sent["current_password_enc"]) == "old-Secret-1"
    assert box.decrypt(sent["new_password_enc"]) == "new-Secret-2"
    output = all_bot_output(harness)
    for secret in ("old-Secret-1", "new-Secret-2", "new-Secret-typo"):
        assert secret not in output  # never echoed, in any message, edit or answer
        assert secret not in changes[0].params  # nor stored in the clear
    assert len([c for c in harness.core.calls if c.method == "deleteMessage"]) == 5
    leftover = [
        k for k in redis_client.keys(f"{keys.PREFIX}:bot:fsm:*:data") if redis_client.get(k) not in (None, "{}")
    ]
    assert leftover == []  # the form's encrypted passwords left Redis with it


def test_profile_changes_pass_on_telegrams_refusal_and_take_a_photo(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker]
) -> None:
    def responder(operation: AccountOperation) -> Answer:
        params = params_of(operation)
        if params.get("username") == "taken_name":
            return Answer(OperationStatus.FAILED, error=detail("username_taken", username="taken_name"))
        return Answer(result={"changed": [key.removesuffix("_b64") for key in params]})

    worker = start_worker("w1", responder)
    import_account(harness, "w1")
    chat = open_card(harness)
    chat.click("Профиль")
    assert chat.buttons() == ["Имя", "Фамилия", "О себе", "Имя пользователя", "🖼 Фото", "⬅️ Назад"]
    chat.click("Имя пользователя")
    assert "новое имя пользователя" in chat.text()
    mark = len(harness.core.calls)
    chat.send("@taken_name")
    wait_for_text(harness, mark, "⏳ Профиль…", "sendMessage")
    wait_for_text(harness, mark, "❌ Профиль: имя пользователя @taken_name уже занято")

    chat.click("Профиль")
    chat.click("Фото")
    harness.core.files["gif"] = b"GIF89a" + b"\x00" * 32
    photo = {"file_id": "gif", "file_unique_id": "g", "width": 320, "height": 320, "file_size": 38}
    update = message_update(chat.user)
    update["message"]["photo"] = [photo]
    mark = len(harness.core.calls)
    harness.deliver(update)
    refused = wait_for_text(harness, mark, "❌", "sendMessage")
    assert "Это не изображение <code>JPEG</code> или <code>PNG</code>" in refused.params["text"]
    harness.core.files["png"] = PNG
    update = message_update(chat.user)
    update["message"]["photo"] = [{**photo, "file_id": "png", "file_size": len(PNG)}]
    mark = len(harness.core.calls)
    harness.deliver(update)
    wait_for_text(harness, mark, "👤 Профиль изменён: фото")
    photos = [params_of(op) for op in worker.answered if "photo_b64" in params_of(op)]
    assert [base64.b64decode(p["photo_b64"]) for p in photos] == [PNG]  # only the image went out, once


def test_a_form_is_left_by_cancel(harness: BotHarness, start_worker: Callable[..., SimulatedWorker]) -> None:
    start_worker("w1")
    import_account(harness, "w1")
    chat = open_card(harness)
    chat.click("Профиль")
    chat.click("Фамилия")
    chat.click("Отмена")
    assert "Отменено." in chat.text() and "📱 <b>+7 *** ***-45-67</b>" in chat.text()
    assert "Не понял" in chat.send("Lee").params["text"]  # no longer taken for a last name


# --- a worker's accounts page


def test_check_all_updates_one_message_as_results_arrive(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker]
) -> None:
    verdicts: dict[int, str] = {}

    def responder(operation: AccountOperation) -> Answer:
        return Answer(result=check_report(verdicts[operation.account_id], other_sessions=1), delay=0.6)

    start_worker("w1", responder)
    for index, verdict in enumerate(["ok", "ok", "limited", "banned", "ok"]):
        verdicts[import_account(harness, "w1", f"+7999000000{index}")] = verdict
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("w1")
    chat.click("Аккаунты")
    assert chat.buttons()[-3:] == ["🩺 Проверить все", "✂️ Завершить другие сеансы у всех", "⬅️ Назад"]
    page = chat.screen()["message_id"]
    chat.click("Проверить все")  # more than one account: it asks first, naming how many
    assert "🩺 Проверить 5 аккаунтов на воркере <b>w1</b>?" in chat.text()
    assert chat.screen()["message_id"] == page
    mark = len(harness.core.calls)
    chat.click("Да, проверить")
    final = wait_for_text(harness, mark, "✅ Готово.")
    text = final.params["text"]
    assert "🖥 <b>w1</b>\nПроверка: готово 5/5 · ✅ 3 · ⚠️ 1 · ❌ 1" in text
    assert "⚠️ +7 *** ***-00-02: ⚠️ ограничен (спам) — спам: есть ограничения" in text
    assert "❌ +7 *** ***-00-03: ⛔ заблокирован" in text
    assert "+7 *** ***-00-00" not in text  # fine ones are counted, not listed

    calls = harness.core.calls_to(ADMIN, after=mark)
    assert not [c for c in calls if c.method == "sendMessage"]  # one message: edited, never sent again
    edits = [c for c in calls if c.method == "editMessageText"]
    assert {int(c.params["message_id"]) for c in edits} == {page}
    assert len(edits) >= 3  # the results showed up as they came, not only at the end
    texts = [c.params["text"] for c in edits]
    assert len(set(texts)) == len(texts)  # edited only when something changed
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(edits)]
    assert min(gaps) >= 1.4  # no more often than every ~1.5 s
    assert chat.buttons() == ["⬅️ Назад"]


def test_ending_other_sessions_for_all_asks_first(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker]
) -> None:
    worker = start_worker("w1", lambda operation: Answer(result={"terminated": 1}))
    for index in range(2):
        import_account(harness, "w1", f"+7999000000{index}")
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("w1")
    chat.click("Аккаунты")
    chat.click("Завершить другие сеансы у всех")
    assert "✂️ Завершить все другие сеансы у 2 аккаунтов на воркере <b>w1</b>?" in chat.text()
    assert worker.pending() == [] and worker.answered == []  # nothing asked yet
    chat.click("Отмена")
    assert "Аккаунты на w1" in chat.text()
    chat.click("Завершить другие сеансы у всех")
    mark = len(harness.core.calls)
    chat.click("Да, завершить")
    final = wait_for_text(harness, mark, "✅ Готово.")
    assert "Завершение других сеансов: готово 2/2 · ✅ 2 · ⚠️ 0 · ❌ 0" in final.params["text"]
    assert {op.name for op in worker.answered} == {OperationName.TERMINATE_OTHERS}


def test_an_offline_worker_fails_each_account_with_the_reason(harness: BotHarness) -> None:
    harness.services.fleet.add_worker("gone", "10.0.0.9", "test")
    import_account(harness, "gone")
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("gone")
    chat.click("Аккаунты")
    chat.click("Проверить все")
    assert "🩺 Проверить 1 аккаунт на воркере <b>gone</b>?" in chat.text()
    mark = len(harness.core.calls)
    chat.click("Да, проверить")
    final = wait_for_text(harness, mark, "✅ Готово.")
    assert "готово 1/1 · ✅ 0 · ⚠️ 0 · ❌ 1" in final.params["text"]
    assert "❌ +7 *** ***-45-67: воркер gone оффлайн" in final.params["text"]


# --- plugins


def test_plugins_toggle_and_a_bad_configuration_changes_nothing(
    harness: BotHarness, start_worker: Callable[..., SimulatedWorker], redis_client: Redis
) -> None:
    start_worker("w1")
    account_id = import_account(harness, "w1")
    chat = open_card(harness)
    chat.click("Плагины")
    assert "🧩 <b>Плагины</b> аккаунта +7 *** ***-45-67" in chat.text()
    assert {"▫️ autoreply", "▫️ greeter", "▫️ watch"} <= set(chat.buttons())

    chat.click("autoreply")
    assert "Пришлите настройки плагина <b>autoreply</b>" in chat.text()
    assert "<code>text</code>*" in chat.text()
    assert not [b for b in chat.buttons() if "По умолчанию" in b]  # its schema needs a text: no default
    for bad, reason in (
        ("{not json", "Настройки — не <code>JSON</code>"),
        ("[1, 2]", "Настройки должны быть объектом <code>JSON</code>"),
        ('{"cooldown_minutes": 5}', "Настройки не подходят плагину autoreply"),
    ):
        reply = chat.send(bad)
        assert "❌" in reply.params["text"] and reason in reply.params["text"], reply.params["text"]
        assert harness.services.plugins.status([account_id]) == []  # nothing changed
    chat.send('{"text": "Away until Monday"}')
    assert "✅ Плагин <b>autoreply</b> включён." in chat.text()
    assert "✅ autoreply" in chat.buttons()
    assert json.loads(redis_client.hget(keys.account_plugins(account_id), "autoreply") or "{}") == {
        "text": "Away until Monday"
    }

    chat.click("greeter")
    assert "📄 По умолчанию ({})" in chat.buttons()
    chat.click("По умолчанию")
    assert "✅ Плагин <b>greeter</b> включён." in chat.text()

    chat.click("✅ autoreply")  # an enabled one: tapping disables it
    assert "⏹ Плагин <b>autoreply</b> выключен." in chat.text() and "▫️ autoreply" in chat.buttons()
    assert [row.plugin for row in harness.services.plugins.status([account_id])] == ["greeter"]
    chat.click("Назад")
    assert "🧩 Плагины: ⚪ greeter (не запущен)" in chat.text()
