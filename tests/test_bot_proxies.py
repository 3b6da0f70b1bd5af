"""The bot's Proxies page (`bot.handlers.proxies`) through `Dispatcher.feed_update`, with real Redis, the database
and the real proxies service: the empty pool's note, the list (each state, paged), a proxy's card with its last
error and events, removal refused while accounts use it and the reassign path, and checks — without a worker
online, and (a processes test) through a real worker process and a real SOCKS5 server to the loopback MTProto
server. No Bot API call ever carries a proxy's user or password."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.proxy_health import judge
from celery_app import presence, proxy_health
from celery_app.proxy_health import ProxyCheck
from config import ProxyPolicy
from database.models import Account, FleetEvent
from sandbox.mtproto import MTProtoServer
from tests.support.bot_api import AdminChat, Call
from tests.support.bot_harness import BotHarness
from tests.support.fake_telegram import session_for
from tests.support.socks_proxy import SocksProxy
from tests.support.stack import Stack, wait_until

ADMIN = 111
API_HASH = "0123456789abcdef0123456789abcdef"
USER, PASSWORD = "alice-user", "pr0xy-pa55word"
POLICY = ProxyPolicy(check_seconds=30, slow_ms=500, dead_after=2, moves_per_scan=3)
WAIT = 60.0  # a check waits for a worker's answer; generous on a busy two-core machine


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN}))
    yield running
    running.close()


@pytest.fixture(autouse=True)
def _no_credentials_shown(harness: BotHarness) -> Iterator[None]:
    """After each test: no call the bot made (texts, buttons, callback data, alerts) names a proxy's credentials."""
    yield
    shown = json.dumps([call.params for call in harness.core.calls], ensure_ascii=False)
    assert USER not in shown and PASSWORD not in shown


def add_proxies(harness: BotHarness, *hosts: str, group: str = "eu", cap: int | None = None) -> list[int]:
    assert harness.services.proxies is not None
    urls = [f"socks5://{USER}:{PASSWORD}@{host}:1080" for host in hosts]
    return [added.id for added in harness.services.proxies.add(urls, group, cap, "test")]


def report(harness: BotHarness, proxy_id: int, ok: bool, ms: float = 20.0, fails: int = 0) -> None:
    """A worker's check of the proxy lands in Redis (`worker.proxy_check`), and the backend judges it."""
    proxies = harness.services.proxies
    assert proxies is not None
    at = presence.server_time(proxies.redis)
    check = ProxyCheck("w1", ok, ms if ok else None, "" if ok else "refused", 0 if ok else fails, at, 30.0)
    proxy_health.write_checks(proxies.redis, {proxy_id: check})
    with proxies.sessions.begin() as session:
        judge(session, proxies.redis, POLICY, presence.server_time(proxies.redis), [proxy_id])


def add_accounts(harness: BotHarness, count: int, proxy_id: int) -> list[int]:
    """Accounts (stopped) on worker w1, pinned to the proxy."""
    if "w1" not in {worker.name for worker in harness.services.fleet.list_workers()}:
        harness.services.fleet.add_worker("w1", "10.0.0.1", "test")
    ids = []
    for _ in range(count):
        phone = f"+7999{len(ids) + proxy_id * 100:07d}"
        ids.append(
            harness.services.accounts.import_session(
                "w1", 12345, API_HASH, session_string=session_for(phone), phone=phone, actor="test"
            ).id
        )
    assert harness.services.proxies is not None
    harness.services.proxies.set_proxy(ids, "test", proxy_id=proxy_id)
    return ids


def pins(harness: BotHarness, account_ids: list[int]) -> set[int | None]:
    with harness.services.accounts.sessions() as session:
        return set(session.scalars(select(Account.proxy_id).where(Account.id.in_(account_ids))))


def to_english(chat: AdminChat) -> None:
    """Switch the admin's language as they would: /start, 🌐, English."""
    chat.send("/start")
    chat.click("Язык")
    chat.click("English")


def edited_with(harness: BotHarness, words: str, after: int) -> Call:
    """The bot's edit (after call `after`) whose text says `words`: a check's outcome, when the worker answered."""
    return harness.core.wait_for(
        lambda c: c.method == "editMessageText" and words in str(c.params.get("text", "")), WAIT, after=after
    )


# --- the list


def test_the_menu_opens_the_pool_and_an_empty_pool_says_how_to_add_one(harness: BotHarness) -> None:
    chat = harness.chat(ADMIN, "ru")
    chat.send("/start")
    chat.click("🔌 Прокси")
    assert "В пуле пока нет прокси" in chat.text()
    assert "<code>python run_cli.py proxies add socks5://user:pass@host:port --group eu</code>" in chat.text()
    assert chat.buttons() == ["🏠 Меню"]
    to_english(chat)
    chat.send("/proxies")
    assert "The pool has no proxies yet" in chat.text() and "run_cli.py proxies add" in chat.text()


def test_the_list_shows_each_proxys_state_latency_load_and_last_check(harness: BotHarness) -> None:
    alive, slow, dead, unknown = add_proxies(harness, "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    add_proxies(harness, "10.9.0.1", group="us", cap=5)
    report(harness, alive, True, 42.0)
    report(harness, slow, True, 900.0)
    report(harness, dead, False, fails=2)
    add_accounts(harness, 2, alive)
    chat = harness.chat(ADMIN, "ru")
    chat.send("/proxies")
    text = chat.text()
    assert "🔌 <b>Прокси</b> — стр. 1/1, всего 5" in text
    assert (
        f"🟢 работает <b>#{alive}</b> <code>socks5://a***@10.0.0.1:1080</code>\nгруппа eu · 42 мс · аккаунты 2/∞"
        in text
    )
    assert re.search(r"аккаунты 2/∞ · проверка: \d+ с назад", text)
    assert f"🟡 медленный <b>#{slow}</b>" in text and "группа eu · 900 мс · аккаунты 0/∞" in text
    assert f"🔴 мёртв <b>#{dead}</b>" in text
    assert f"⚪ не проверен <b>#{unknown}</b>" in text and "проверка: никогда" in text
    assert "группа us · — · аккаунты 0/5 · проверка: никогда" in text
    assert chat.buttons()[:5] == [
        f"🟢 #{alive} socks5://a***@10.0.0.1:1080",
        f"🟡 #{slow} socks5://a***@10.0.0.2:1080",
        f"🔴 #{dead} socks5://a***@10.0.0.3:1080",
        f"⚪ #{unknown} socks5://a***@10.0.0.4:1080",
        f"⚪ #{unknown + 1} socks5://a***@10.9.0.1:1080",
    ]
    assert chat.buttons()[5:] == ["🔄 Обновить", "🔎 Проверить все", "🏠 Меню"]

    to_english(chat)
    chat.send("/proxies")
    text = chat.text()
    assert "🔌 <b>Proxies</b> — page 1/1, 5 in all" in text
    assert "🟢 alive" in text and "🟡 slow" in text and "🔴 dead" in text and "⚪ unknown" in text
    assert "group eu · 900 ms · accounts 0/∞" in text and "group us · — · accounts 0/5 · checked: never" in text


def test_the_list_is_paged_ten_at_a_time(harness: BotHarness) -> None:
    add_proxies(harness, *(f"10.0.1.{n}" for n in range(1, 24)))
    chat = harness.chat(ADMIN, "ru")
    chat.send("/proxies")
    assert "стр. 1/3, всего 23" in chat.text()
    rows = [b for b in chat.buttons() if "socks5://" in b]
    assert len(rows) == 10 and rows[0].endswith("@10.0.1.1:1080")
    chat.click("▶️")
    assert "стр. 2/3" in chat.text() and "10.0.1.11:1080" in chat.text() and "10.0.1.1:1080" not in chat.text()
    chat.click("▶️")
    assert "стр. 3/3" in chat.text() and len([b for b in chat.buttons() if "socks5://" in b]) == 3
    chat.click("10.0.1.22:1080")
    assert "<b>Прокси #22</b>" in chat.text()
    chat.click("Назад")
    assert "стр. 3/3" in chat.text()  # back to the page it was opened from


# --- the card


def test_the_card_shows_the_health_the_last_error_and_the_events(harness: BotHarness) -> None:
    [proxy_id] = add_proxies(harness, "10.0.0.3", cap=10)
    add_accounts(harness, 1, proxy_id)
    report(harness, proxy_id, False, fails=1)
    report(harness, proxy_id, False, fails=2)
    chat = harness.chat(ADMIN, "ru")
    chat.send("/proxies")
    chat.click("10.0.0.3:1080")
    text = chat.text()
    assert f"🔌 <b>Прокси #{proxy_id}</b> — 🔴 мёртв" in text
    assert "Адрес: <code>socks5://a***@10.0.0.3:1080</code>" in text and "Группа: eu" in text
    assert "Аккаунты: 1/10" in text and "Задержка: —" in text and "Последняя проверка: " in text
    assert "Последняя ошибка: прокси отклонил соединение (подряд: 2)" in text
    assert "<b>Последние события:</b>" in text
    assert "🔴 мёртв: проверок подряд не прошло: 2 (прокси отклонил соединение); за ним аккаунтов: 1" in text
    assert "добавлен: socks5://a***@10.0.0.3:1080 в группе eu" in text
    assert chat.buttons() == ["🔎 Проверить", "🗑 Удалить", "⬅️ Назад", "🔄 Обновить"]
    chat.click("Назад")
    assert "всего 1" in chat.text()

    to_english(chat)
    chat.send("/proxies")
    chat.click("10.0.0.3:1080")
    text = chat.text()
    assert f"🔌 <b>Proxy #{proxy_id}</b> — 🔴 dead" in text and "Accounts: 1/10" in text
    assert "Last error: the proxy refused the connection (2 in a row)" in text
    assert "🔴 dead: 2 checks in a row failed (the proxy refused the connection)" in text
    assert chat.buttons() == ["🔎 Check", "🗑 Remove", "⬅️ Back", "🔄 Refresh"]


# --- removal


def test_removal_is_refused_while_accounts_use_it_and_can_move_them_to_its_group(harness: BotHarness) -> None:
    used, dead, spare, idle = add_proxies(harness, "10.0.0.1", "10.0.0.3", "10.0.0.2", "10.0.0.5")
    [alone] = add_proxies(harness, "10.9.0.1", group="us")
    accounts = add_accounts(harness, 2, used)
    stranded = add_accounts(harness, 1, alone)
    report(harness, dead, False, fails=2)  # not where accounts are moved to, though first by id
    chat = harness.chat(ADMIN, "ru")
    chat.send("/proxies")

    chat.click("10.0.0.5:1080")  # nothing on it: removed once confirmed
    chat.click("Удалить")
    assert f"Удалить прокси #{idle} <code>socks5://a***@10.0.0.5:1080</code> из пула?" in chat.text()
    assert chat.buttons() == ["🗑 Да, удалить", "✖️ Отмена"]
    chat.click("Да, удалить")
    assert f"🗑 Прокси #{idle} удалён." in chat.text() and "всего 4" in chat.text()

    chat.click("10.0.0.1:1080")
    chat.click("Удалить")
    chat.click("Да, удалить")
    text = chat.text()
    assert f"За прокси #{used} ещё закреплены аккаунты (2)" in text  # the service's refusal, on the card
    assert f"<b>Прокси #{used}</b>" in text
    assert chat.buttons()[0] == "🚚 Удалить и перенести аккаунты (2)"
    assert pins(harness, accounts) == {used}
    chat.click("Удалить и перенести")
    assert "перенести его аккаунты (2) на другие прокси группы eu?" in chat.text()
    chat.click("Да, удалить")
    text = chat.text()
    assert f"🗑 Прокси #{used} удалён." in text and "Перенесено аккаунтов: 2." in text
    assert f"• аккаунт #{accounts[0]} → #{spare} socks5://a***@10.0.0.2:1080" in text
    assert pins(harness, accounts) == {spare}
    with harness.services.accounts.sessions() as session:
        moved = session.scalars(select(FleetEvent).where(FleetEvent.kind == "account.proxy")).all()
        assert {event.actor for event in moved if f"#{used}" in event.detail and "removed" in event.detail} == {
            f"bot:{ADMIN}"
        }

    # A group with no other proxy: the accounts cannot move, and the card says why.
    chat.click("10.9.0.1:1080")
    chat.click("Удалить")
    chat.click("Да, удалить")
    chat.click("Удалить и перенести")
    chat.click("Да, удалить")
    assert "В группе us нет не мёртвого прокси, на который поместятся ещё аккаунты (1)" in chat.text()
    assert f"<b>Прокси #{alone}</b>" in chat.text() and pins(harness, stranded) == {alone}


def test_removal_in_english(harness: BotHarness) -> None:
    [used] = add_proxies(harness, "10.0.0.1")
    add_accounts(harness, 1, used)
    chat = harness.chat(ADMIN, "ru")
    to_english(chat)
    chat.send("/proxies")
    chat.click("10.0.0.1:1080")
    chat.click("Remove")
    assert "Remove proxy" in chat.text() and chat.buttons() == ["🗑 Yes, remove", "✖️ Cancel"]
    chat.click("Yes, remove")
    assert f"Proxy #{used} still carries 1 account(s)" in chat.text()
    assert chat.buttons()[0] == "🚚 Remove and move its accounts (1)"
    chat.click("Remove and move")
    assert "move its accounts (1) to other proxies of group eu?" in chat.text()
    chat.click("Cancel")
    assert f"<b>Proxy #{used}</b>" in chat.text()


# --- checks


def test_a_check_with_no_worker_online_says_so(harness: BotHarness) -> None:
    add_proxies(harness, "10.0.0.1")
    chat = harness.chat(ADMIN, "ru")
    chat.send("/proxies")
    mark = len(harness.core.calls)
    chat.click("🔎 Проверить все")
    assert "⏳ Проверяю все прокси (1) через воркеры…" in chat.text()
    edited_with(harness, "Нет ни одного воркера в сети, чтобы проверить прокси.", mark)
    chat.click("10.0.0.1:1080")
    mark = len(harness.core.calls)
    chat.click("🔎 Проверить")
    edited_with(harness, "Нет ни одного воркера в сети, чтобы проверить прокси.", mark)
    assert "⚪ не проверен" in chat.text()


@pytest.mark.processes
def test_a_check_runs_on_a_real_worker_through_a_real_proxy(harness: BotHarness, stack: Stack, tmp_path: Path) -> None:
    with MTProtoServer() as server, SocksProxy(tmp_path, USER, PASSWORD) as proxy:
        key_file = server.write_public_key(stack.workdir / "mtproto.pub")
        stack.start_worker("w1", TG_MTPROTO_DC=server.dc_setting, TG_MTPROTO_PUBKEY=key_file)
        wait_until(lambda: harness.services.fleet.is_online("w1"), WAIT, message="worker w1 online")
        assert harness.services.proxies is not None
        [proxy_id] = [a.id for a in harness.services.proxies.add([proxy.url], "eu", None, "test")]
        chat = harness.chat(ADMIN, "en")
        chat.send("/proxies")
        chat.click(f"#{proxy_id} socks5://a***@127.0.0.1:{proxy.port}")
        assert "⚪ unknown" in chat.text()

        mark = len(harness.core.calls)
        chat.click("🔎 Check")
        assert "⏳ Checking the proxy: a worker connects through it…" in chat.text()
        edited_with(harness, "✅ Check passed:", mark)
        text = chat.text()
        assert "(worker w1)" in text and f"<b>Proxy #{proxy_id}</b> — 🟢 alive" in text and " ms" in text
        assert proxy.tunnels_to(server.port) >= 1  # the worker went through the proxy to the data centre

        proxy.kill()
        mark = len(harness.core.calls)
        chat.click("🔎 Check")
        edited_with(harness, "❌ Check failed: the proxy refused the connection (worker w1).", mark)
        assert "Last error: the proxy refused the connection (1 in a row)" in chat.text()

        chat.click("Back")
        mark = len(harness.core.calls)
        chat.click("Check all")
        assert "⏳ Checking every proxy (1) from the workers…" in chat.text()
        edited_with(harness, "🔎 Proxies checked: 1 — 0 passed, 1 failed.", mark)
        assert "2 in a row" not in chat.text()  # the list shows no errors, the card does
