"""The bot's handlers through `Dispatcher.feed_update`, with a recording session, real Redis and database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from redis import Redis

from bot.alerts import EventLine, build_alerts
from bot.callbacks import AccountAction, AccountCard, WorkerAction, WorkerCard
from celery_app import keys, presence
from celery_app.presence import WorkerInfo
from common.details import detail, free
from database.accounts import get_account
from database.events import NewEvent, record_events
from database.workers import find_worker, get_worker
from tests.support.bot_harness import BotHarness
from tests.support.fake_telegram import session_for

ADMIN, OTHER_ADMIN, STRANGER = 111, 222, 999
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN, OTHER_ADMIN}))
    yield running
    running.close()


def live_worker(redis: Redis, name: str, address: str = "10.0.0.1") -> None:
    info = WorkerInfo(name, address, "host", 4321, "0.1.0", presence.server_time(redis) - 3725, f"i-{name}")
    presence.register(redis, info, 60)


def add_worker(harness: BotHarness, name: str, address: str = "10.0.0.1") -> int:
    harness.services.fleet.add_worker(name, address, "test")
    return harness.services.fleet.id_of(name)


def import_account(harness: BotHarness, worker: str, phone: str = "+79991234567") -> int:
    view = harness.services.accounts.import_session(
        worker, 12345, API_HASH, session_string=session_for(phone), phone=phone, actor="test"
    )
    return view.id


def test_strangers_get_one_refusal_to_start_and_nothing_else(harness: BotHarness) -> None:
    worker_id = add_worker(harness, "w1")
    stranger = harness.chat(STRANGER)
    reply = stranger.send("/start")
    assert reply.method == "sendMessage" and reply.params["text"] == "⛔ Этот бот только для администраторов."
    mark = len(harness.core.calls)
    harness.deliver(
        {
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": STRANGER, "type": "private"},
                "from": stranger.user,
                "text": "hello",
            }
        }
    )
    stranger.deliver(
        {
            "callback_query": {
                "id": "1",
                "from": stranger.user,
                "chat_instance": "1",
                "data": WorkerCard(id=worker_id, action=WorkerAction.DEACTIVATE).pack(),
            }
        }
    )
    # The button gets one short refusal (else its spinner turns on and on), and nothing else happens.
    answer = harness.core.wait_for(lambda c: c.method == "answerCallbackQuery", 10, after=mark)
    assert answer.params["text"] == "⛔ Этот бот только для администраторов."
    time.sleep(0.5)
    assert [c.method for c in harness.core.calls[mark:]] == ["answerCallbackQuery"]  # no edit, nothing revealed
    with harness.services.fleet.sessions() as session:
        assert get_worker(session, "w1").is_active  # and nothing changed


def test_main_menu_speaks_the_admins_language_and_switches(harness: BotHarness, redis_client: Redis) -> None:
    russian = harness.chat(ADMIN, "ru")
    russian.send("/start")
    assert "Управление флотом" in russian.text()
    assert russian.buttons() == [
        "🖥 Воркеры",
        "📱 Аккаунты",
        "➕ Добавить аккаунт",
        "🔌 Прокси",
        "📊 Сводка",
        "🌐 Язык / Language",
        "👥 Админы",
        "📜 Журнал",
    ]
    english = harness.chat(OTHER_ADMIN, "en-US")
    english.send("/start")
    assert "Fleet control" in english.text() and "🖥 Workers" in english.buttons()
    russian.click("Язык")
    russian.click("English")
    assert "Fleet control" in russian.text()
    assert redis_client.get(f"{keys.PREFIX}:bot:lang:{ADMIN}") == "en"


def test_workers_are_paged_ten_at_a_time_with_live_status(harness: BotHarness, redis_client: Redis) -> None:
    for index in range(23):
        add_worker(harness, f"srv{index:02d}")
    live_worker(redis_client, "srv00")
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    assert "стр. 1/3, всего 23" in chat.text()
    rows = [b for b in chat.buttons() if "srv" in b]
    assert len(rows) == 10 and rows[0].startswith("🟢 srv00") and rows[1].startswith("🔴 srv01")
    chat.click("▶️")
    assert "стр. 2/3" in chat.text() and "🔴 srv10 · 0/0" in chat.buttons()
    chat.click("▶️")
    assert "стр. 3/3" in chat.text() and len([b for b in chat.buttons() if "srv" in b]) == 3


def test_worker_card_switches_and_removal(harness: BotHarness, redis_client: Redis) -> None:
    add_worker(harness, "alive", "203.0.113.5")
    live_worker(redis_client, "alive", "203.0.113.5")
    add_worker(harness, "gone", "203.0.113.6")
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("alive")
    text = chat.text()
    assert (
        "<b>alive</b> — 🟢 Онлайн" in text
        and "203.0.113.5" in text
        and "с назад" in text
        and "аптайм: 1 ч 2 мин" in text
    )
    assert "🗑 Удалить" not in chat.buttons()  # online: cannot be removed
    chat.click("Отключить")
    assert "отключён админом" in chat.text()
    with harness.services.fleet.sessions() as session:
        assert not get_worker(session, "alive").is_active
    chat.click("Включить")
    chat.click("Назад")
    chat.click("gone")
    assert "🔴 Оффлайн" in chat.text()
    chat.click("Удалить")
    assert "Удалить воркер <b>gone</b>" in chat.text()
    chat.click("Да, удалить")
    assert "gone" not in " ".join(chat.buttons())
    with harness.services.fleet.sessions() as session:
        assert find_worker(session, "gone") is None


def test_adding_a_worker_validates_each_answer(harness: BotHarness) -> None:
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("Добавить воркер")
    assert "Имя воркера: латиница, цифры" in chat.send("bad name!").params["text"]
    chat.send("fra-1")
    assert "Адрес сервера воркера <b>fra-1</b>" in chat.text()
    chat.send("198.51.100.10")
    harness.core.wait_for(lambda c: c.method == "sendMessage" and "fra-1</b> — 🔴 Оффлайн" in c.params.get("text", ""))
    with harness.services.fleet.sessions() as session:
        assert get_worker(session, "fra-1").address == "198.51.100.10"


def test_accounts_list_and_card_mask_the_phone(harness: BotHarness, redis_client: Redis) -> None:
    add_worker(harness, "w1")
    live_worker(redis_client, "w1")
    account_id = import_account(harness, "w1", "+79991234567")
    chat = harness.chat(ADMIN)
    chat.send("/accounts")
    assert "всего 1" in chat.text() and chat.buttons()[0] == "⚪ +7 *** ***-45-67"
    chat.click("+7 *** ***-45-67")
    text = chat.text()
    assert "<b>+7 *** ***-45-67</b>" in text and "Воркер: w1" in text and "⚪ остановлен — сессия импортирована" in text
    assert "📲 Устройство: " in text and "приложение " in text  # the identity the account presents to Telegram
    assert "79991234567" not in json.dumps([c.params for c in harness.core.calls])
    assert chat.buttons()[:4] == ["▶️ Запустить", "🔄 Перезапустить", "🔀 Перенести", "🗑 Удалить"]
    chat.click("Перенести")
    assert "Нет других онлайн-воркеров" in chat.text()
    assert account_id


def test_moving_an_account_says_where_it_went_in_the_admins_language(harness: BotHarness, redis_client: Redis) -> None:
    add_worker(harness, "old")  # offline: nothing to stop there
    add_worker(harness, "new")
    live_worker(redis_client, "new")
    account_id = import_account(harness, "old")
    chat = harness.chat(ADMIN)
    chat.send("/accounts")
    chat.click("+7 ***")
    chat.click("Перенести")
    assert "Куда перенести аккаунт" in chat.text() and "🟢 new" in chat.buttons()
    chat.click("new")
    assert "🔀 Аккаунт перенесён с воркера <b>old</b> на <b>new</b>." in chat.text()
    assert "Воркер: new" in chat.text()
    with harness.services.accounts.sessions() as session:
        assert get_account(session, account_id).worker_id == harness.services.fleet.id_of("new")


def test_start_on_an_offline_worker_offers_to_start_when_back(harness: BotHarness) -> None:
    add_worker(harness, "away")
    account_id = import_account(harness, "away")
    chat = harness.chat(ADMIN)
    chat.send("/accounts")
    chat.click("+7 ***")
    chat.click("Запустить")
    harness.core.wait_for(lambda c: c.method == "editMessageText" and "Воркер away оффлайн" in c.params.get("text", ""))
    assert chat.buttons()[0] == "⏰ Запустить, когда вернётся"
    chat.click("когда вернётся")
    assert "запустится, когда воркер away вернётся" in chat.text()
    with harness.services.accounts.sessions() as session:
        assert get_account(session, account_id).desired_state == "running"


def test_forged_and_stale_buttons_are_answered_harmlessly(harness: BotHarness) -> None:
    chat = harness.chat(ADMIN)
    chat.send("/start")
    for data in ("garbage", "a:notanumber:c", "w:1:explode", "l:xx", "", "m:" + "x" * 60):
        reply = chat.press(data)
        assert reply.method == "answerCallbackQuery"
    missing = chat.press(AccountCard(id=424242, action=AccountAction.STOP).pack())
    assert missing.method == "answerCallbackQuery" and "Аккаунт 424242 не найден" in missing.params["text"]
    unknown_worker = chat.press(WorkerCard(id=77, action=WorkerAction.DEACTIVATE).pack())
    assert "Воркер #77 не найден" in unknown_worker.params["text"]
    chat.send("what is this")
    assert "Не понял" in chat.text()


def test_the_add_account_wizard_validates_every_step(harness: BotHarness, redis_client: Redis) -> None:
    add_worker(harness, "w1")
    live_worker(redis_client, "w1")
    chat = harness.chat(ADMIN)
    chat.send("/add")
    chat.click("w1")
    chat.click("Импорт сессии")
    assert "Неверный номер телефона" in chat.send("call me maybe").params["text"]
    assert "API ID" in chat.send("+7 999 123-45-67").params["text"]
    assert "API ID — это число" in chat.send("twelve").params["text"]
    assert "API hash" in chat.send("12345").params["text"]
    assert "32 шестнадцатеричных символа" in chat.send("short").params["text"]
    mark = len(harness.core.calls)
    assert "строку сессии" in chat.send(API_HASH).params["text"]
    assert any(c.method == "deleteMessage" for c in harness.core.calls[mark:])  # the hash left the chat
    fsm = " ".join(str(redis_client.get(k)) for k in redis_client.keys(f"{keys.PREFIX}:bot:fsm:*"))
    assert "api_hash_enc" in fsm and API_HASH not in fsm
    assert "Сессия не подходит" in chat.send("1notasession").params["text"]
    chat.send(session_for("+79991234567"))
    added = harness.core.wait_for(
        lambda c: c.method == "sendMessage" and "✅ Аккаунт добавлен" in c.params.get("text", "")
    )
    # The message that says so, not whatever the chat shows last (a busy machine may order them otherwise).
    assert "+7 *** ***-45-67" in added.params["text"]
    assert redis_client.keys(f"{keys.PREFIX}:bot:fsm:*:state") == [] or all(
        not redis_client.get(k) for k in redis_client.keys(f"{keys.PREFIX}:bot:fsm:*:state")
    )


def test_cancel_works_anywhere_and_the_wizard_survives_a_restart(
    harness: BotHarness, redis_url: str, sqlite_url: str, redis_client: Redis
) -> None:
    add_worker(harness, "w1")
    live_worker(redis_client, "w1")
    chat = harness.chat(ADMIN)
    chat.send("/add")
    chat.click("w1")
    chat.click("Импорт сессии")
    chat.send("+79990000001")
    harness.close()
    restarted = BotHarness(redis_url, sqlite_url, frozenset({ADMIN}), harness.core)
    try:
        again = restarted.chat(ADMIN)
        assert "API hash" in again.send("12345").params["text"]  # still at the API ID step
        assert again.send("/cancel").params["text"] == "Отменено."
        assert "Не понял" in again.send(API_HASH).params["text"]
    finally:
        restarted.close()
        harness.close = lambda: None  # type: ignore[method-assign]


def test_alerts_are_grouped_when_many_workers_drop() -> None:
    wave = [EventLine("worker.offline", f"w{i}", detail("no_heartbeat", seconds=61.0)) for i in range(5)]
    alerts = build_alerts(wave)
    assert len(alerts) == 1
    assert alerts[0].render("ru") == "🔴 Оффлайн сразу 5 воркеров: w0, w1, w2, w3, w4"
    assert alerts[0].render("en") == "🔴 5 workers went offline at once: w0, w1, w2, w3, w4"
    pair = build_alerts(
        [
            *wave[:2],
            EventLine("account.status", "account:7", detail("status_change", status="banned", cause=free("gone"))),
        ]
    )
    assert [a.render("en") for a in pair] == [
        "🔴 Worker <b>w0</b> is offline (no heartbeat for 61 s)",
        "🔴 Worker <b>w1</b> is offline (no heartbeat for 61 s)",
        "⛔ Account #7: ⛔ banned — gone",
    ]
    assert pair[0].render("ru") == "🔴 Воркер <b>w0</b> оффлайн (нет сигнала 61 с)"
    assert build_alerts([EventLine("account.status", "account:7", detail("status_is", status="running"))]) == []


def test_alerts_reach_every_admin_in_their_language(harness: BotHarness) -> None:
    harness.chat(OTHER_ADMIN, "en").send("/start")  # this admin's language is now known
    assert harness.poll_alerts() == 0  # the first poll only finds where the log ends
    with harness.services.fleet.sessions.begin() as session:
        record_events(session, [NewEvent("worker.offline", "fra-1", detail("no_heartbeat", seconds=70.0))])
    assert harness.poll_alerts() == 1
    sent = {
        int(c.params["chat_id"]): c.params["text"]
        for c in harness.core.calls
        if c.method == "sendMessage" and "fra-1" in c.params.get("text", "")
    }
    assert sent == {
        ADMIN: "🔴 Воркер <b>fra-1</b> оффлайн (нет сигнала 70 с)",
        OTHER_ADMIN: "🔴 Worker <b>fra-1</b> is offline (no heartbeat for 70 s)",
    }


def test_a_sandbox_fleet_is_marked_in_the_menu(harness: BotHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    russian = harness.chat(ADMIN, "ru")
    russian.send("/start")
    assert "ПЕСОЧНИЦА" not in russian.text() and "Управление флотом" in russian.text()
    harness.services.sandbox = True  # what bot.main sets from FLEET_SANDBOX (make run's sandbox mode)
    russian.send("/start")
    assert russian.text().startswith("🧪 <b>ПЕСОЧНИЦА</b>") and "Управление флотом" in russian.text()
    english = harness.chat(OTHER_ADMIN, "en")
    english.send("/start")
    assert english.text().startswith("🧪 <b>SANDBOX</b>")
    from config import load_bot_settings

    monkeypatch.setenv("TG_BOT_TOKEN", "123456:" + "A" * 35)
    monkeypatch.setenv("ADMIN_IDS", str(ADMIN))
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FLEET_SANDBOX", "1")
    assert load_bot_settings().sandbox is True
    monkeypatch.delenv("FLEET_SANDBOX")
    assert load_bot_settings().sandbox is False


def test_the_worker_card_shows_its_key_and_an_untrusted_one(harness: BotHarness, redis_client: Redis) -> None:
    from common.sealing import KeyPair, fingerprint
    from database.workers import apply_worker_keys, worker_rows

    pinned, other = KeyPair.generate().public_key, KeyPair.generate().public_key
    add_worker(harness, "keyed", "203.0.113.7")
    live_worker(redis_client, "keyed", "203.0.113.7")
    with harness.services.fleet.sessions.begin() as session:
        apply_worker_keys(session, worker_rows(session), {"keyed": pinned})
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("keyed")
    assert f"🔑 Ключ: <code>{fingerprint(pinned)}</code>" in chat.text()
    with harness.services.fleet.sessions.begin() as session:
        apply_worker_keys(session, worker_rows(session), {"keyed": other})
    chat.click("🔄")
    assert (
        f"Предъявлен ключ <code>{fingerprint(other)}</code> вместо закреплённого <code>{fingerprint(pinned)}</code>"
        in (chat.text())
    )
    assert "workers trust keyed" in chat.text()
