"""The admin bot's Board section through `Dispatcher.feed_update`: statistics and the report queue, seeded through
the board's own service over a real database; users appear by opaque handles only, never by Telegram id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from board.errors import BoardError
from board.service import BoardService, UserRef
from bot.board_views import report_card, stats_screen
from bot.callbacks import BoardQueue, BoardReportAction, ReportAction
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardReport, ReportStatus, ReportTarget
from database.models import utcnow
from tests.support.bot_harness import BotHarness
from tests.support.stack import TEST_SECRET_KEY, wait_until
from tests.support.webapp_stub import establish

ADMIN, OTHER_ADMIN = 111, 222
# Board users' Telegram ids: long and distinctive, so finding one in anything the bot sent means it leaked.
ALICE, BOB, CAROL, DAVE, ERIN = 7_100_000_001, 7_100_000_002, 7_100_000_003, 7_100_000_004, 7_100_000_005
TELEGRAM_IDS = (ALICE, BOB, CAROL, DAVE, ERIN)
ALLOWED_TAGS = {"b", "i", "u", "s", "code", "pre", "blockquote", "a"}


@dataclass
class Seeded:
    service: BoardService
    users: dict[str, UserRef]
    ads: dict[str, str]  # name -> public id
    reports: dict[str, str]


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN, OTHER_ADMIN}))
    yield running
    running.close()


def attach_board(harness: BotHarness) -> BoardService:
    """What `bot.main.make_services` does in production: the board's service beside the fleet's."""
    service = BoardService(
        harness.services.fleet.sessions, SecretBox(TEST_SECRET_KEY), BoardLimits(hide_after_reports=2)
    )
    harness.services.board = service  # the dispatcher holds this same BotServices object
    return service


def seed(service: BoardService) -> Seeded:
    users = {
        name: service.user(tg_id, "ru")
        for name, tg_id in (("alice", ALICE), ("bob", BOB), ("carol", CAROL), ("dave", DAVE), ("erin", ERIN))
    }
    for tg_id in TELEGRAM_IDS:
        establish(service, tg_id)  # established accounts: each report weighs fully
    ads = {
        "bike": service.create_ad(users["alice"], "Bike <b>for</b> sale", "Red bike & a helmet", "sale").id,
        "cheap": service.create_ad(users["carol"], "Cheap phones", "Brand new phones, <i>cash</i> only", "sale").id,
        "flat": service.create_ad(users["erin"], "Flat to rent", "Sea view, pay the deposit first", "housing").id,
    }
    bob_invite = service.send_invite(users["bob"], ads["bike"], "Hi! Is the bike still there?")
    dave_invite = service.send_invite(users["dave"], ads["bike"], "Would you swap it for a guitar?")
    carol_invite = service.send_invite(users["carol"], ads["bike"], "Buy cheap phones from me <script>")
    chat = service.decide_invite(users["alice"], bob_invite.invite_id, True)
    service.decide_invite(users["alice"], dave_invite.invite_id, False)
    assert chat.chat_id is not None
    service.record_relay(users["bob"], chat.chat_id, [(10, 20)], "text", "hello there")
    service.record_relay(users["alice"], chat.chat_id, [(21, 11)], "text", "hi, the bike is <u>here</u>")
    service.record_relay(users["bob"], chat.chat_id, [(12, 22)], "photo", "is this the one?")
    reports = {
        "cheap1": service.report(users["dave"], ReportTarget.AD, ads["cheap"], "scam <i>x</i>"),
        "cheap2": service.report(users["bob"], ReportTarget.AD, ads["cheap"], "fake"),  # second report: hidden
        "invite": service.report(users["alice"], ReportTarget.INVITE, carol_invite.invite_id, "spam"),
        "chat": service.report(users["alice"], ReportTarget.CHAT, chat.chat_id, "rude"),
        "flat": service.report(users["dave"], ReportTarget.AD, ads["flat"], "misleading"),
    }
    return Seeded(service, users, ads, reports)


class TagChecker(HTMLParser):
    """Fails on a tag Telegram's HTML mode does not know, or one left open: what unescaped user text causes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, f"unexpected <{tag}>"
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"


def sent_texts(harness: BotHarness) -> list[str]:
    return [str(c.params.get("text", "")) for c in harness.core.calls if c.params.get("text")]


def assert_no_telegram_ids(harness: BotHarness) -> None:
    everything = json.dumps([c.params for c in harness.core.calls], default=str)
    for tg_id in TELEGRAM_IDS:
        assert str(tg_id) not in everything


def assert_valid_html(harness: BotHarness) -> None:
    for text in sent_texts(harness):
        checker = TagChecker()
        checker.feed(text)
        checker.close()
        assert checker.open == [], f"unclosed tags {checker.open} in {text!r}"


AUTHORS = {"bike": "alice", "cheap": "carol", "flat": "erin"}


def ad_status(data: Seeded, ad: str) -> str:
    """As its author sees it (a hidden ad is not found by anyone else)."""
    return data.service.get_ad(data.users[AUTHORS[ad]], data.ads[ad]).status


def resolved_by(service: BoardService, report_id: str) -> tuple[str, str]:
    with service.sessions() as session:
        row = session.scalar(select(BoardReport).where(BoardReport.public_id == report_id))
        assert row is not None
        return row.status, row.resolved_by


def test_board_stats_today_and_week(harness: BotHarness) -> None:
    seed(attach_board(harness))
    chat = harness.chat(ADMIN)
    chat.send("/start")
    assert "📋 Доска" in chat.buttons()
    chat.click("Доска")
    text = chat.text()
    assert "последние 24 часа" in text
    assert "размещено 3 · открыто сейчас 2" in text  # the reported phones ad is hidden by its two reports
    assert "отправлено 3 · принято 1 · отклонено 2" in text  # carol's invitation was declined by its report
    assert "Доля принятых: 33%" in text
    assert "Активные чаты: 1" in text and "Жалобы: открыто 5 · новых 5" in text
    assert "🚩 Жалобы (5)" in chat.buttons()
    chat.click("Неделя")
    week = chat.text()
    assert "последние 7 дней" in week and "По дням" in week
    day_lines = [line for line in week.splitlines() if line[:4].isdigit()]
    assert len(day_lines) == 7
    assert day_lines[-1].endswith(": 3 · 3 · ✅ 1 · ❌ 2") and day_lines[0].endswith(": 0 · 0 · ✅ 0 · ❌ 0")
    chat.click("Сегодня")
    assert "последние 24 часа" in chat.text()

    english = harness.chat(OTHER_ADMIN, "en")
    english.send("/board")
    assert "Board — the last 24 hours" in english.text() and "Accept rate: 33%" in english.text()
    assert "🚩 Reports (5)" in english.buttons()
    assert_no_telegram_ids(harness)
    assert_valid_html(harness)


def test_walking_the_queue_ban_dismiss_hide(harness: BotHarness) -> None:
    service = attach_board(harness)
    data = seed(service)
    handle = {name: ref.public_id for name, ref in data.users.items()}
    chat = harness.chat(ADMIN)
    chat.send("/board")
    chat.click("Жалобы")

    # 1 of 5: the phones ad, its text escaped; the reporter and the reported by handle.
    card = chat.text()
    assert "Жалоба 1 из 5" in card and "объявление" in card
    assert f"<code>{handle['carol']}</code>" in card and f"<code>{handle['dave']}</code>" in card
    assert "scam &lt;i&gt;x&lt;/i&gt;" in card and "Brand new phones, &lt;i&gt;cash&lt;/i&gt; only" in card
    assert set(chat.buttons()) >= {"⛔ Забанить", "✅ Отклонить жалобу", "🙈 Скрыть объявление", "▶️"}
    assert "◀️" not in chat.buttons()

    # The card says how the ad stands: hidden by its two reports until reviewed.
    assert "скрыто жалобами до проверки · 2 жалобы" in card
    assert "вес жалобы 1 · отклонено 0 его жалоб" in card
    # Dismiss both reports on it: hidden by reports, it comes back once the rest no longer weigh enough.
    chat.click("Отклонить жалобу")
    assert "✅ Жалоба отклонена." in chat.text() and "Жалоба 1 из 4" in chat.text() and "fake" in chat.text()
    assert ad_status(data, "cheap") == "open"  # one report left, weighing less than BOARD_HIDE_AFTER_REPORTS
    chat.click("Отклонить жалобу")
    assert ad_status(data, "cheap") == "open"
    assert resolved_by(service, data.reports["cheap1"]) == (ReportStatus.DISMISSED.value, f"bot:{ADMIN}")

    # The invitation: its text shown escaped, no "hide" (the ad is the reporter's own). Ban its sender.
    card = chat.text()
    assert "Жалоба 1 из 3" in card and "приглашение" in card
    assert "Buy cheap phones from me &lt;script&gt;" in card and "Bike &lt;b&gt;for&lt;/b&gt; sale" in card
    assert "🙈 Скрыть объявление" not in chat.buttons()
    chat.click("⛔ Забанить")
    assert f"Забанить <code>{handle['carol']}</code>?" in chat.text() and "Бан окончательный" in chat.text()
    chat.click("Отмена")
    assert "Жалоба 1 из 3" in chat.text()
    assert not service.user(CAROL).banned
    chat.click("⛔ Забанить")
    chat.click("Да, забанить")
    assert f"⛔ <code>{handle['carol']}</code> забанен." in chat.text()
    with pytest.raises(BoardError) as refused:
        service.create_ad(service.user(CAROL), "Phones again", "Even cheaper now", "sale")
    assert refused.value.code == "banned"
    assert ad_status(data, "cheap") == "hidden"  # a ban hides the user's ads
    assert resolved_by(service, data.reports["invite"]) == (ReportStatus.ACTIONED.value, f"bot:{ADMIN}")

    # The chat: its last messages by handle, oldest first.
    card = chat.text()
    assert "Жалоба 1 из 2" in card and "чат" in card and "rude" in card
    messages = card[card.index("Последние сообщения") :]
    assert messages.index("hello there") < messages.index("hi, the bike is &lt;u&gt;here&lt;/u&gt;")
    assert f"<code>{handle['bob']}</code>: hello there" in messages
    assert f"<code>{handle['alice']}</code>: hi, the bike" in messages
    assert f"<code>{handle['bob']}</code>: [photo] is this the one?" in messages
    assert "🙈 Скрыть объявление" not in chat.buttons()  # the chat's ad is the reporter's
    chat.click("▶️")
    assert "Жалоба 2 из 2" in chat.text() and "Flat to rent" in chat.text() and "▶️" not in chat.buttons()
    chat.click("◀️")
    assert "Жалоба 1 из 2" in chat.text()
    chat.click("▶️")

    # Hide the flat ad (one report: not hidden by reports alone); then the chat report is the only one left.
    assert ad_status(data, "flat") == "open"
    chat.click("Скрыть объявление")
    assert "🙈 Объявление «Flat to rent» скрыто." in chat.text() and "Жалоба 1 из 1" in chat.text()
    with pytest.raises(BoardError):
        service.get_ad(None, data.ads["flat"])  # hidden: nobody but its author sees it
    assert resolved_by(service, data.reports["flat"]) == (ReportStatus.ACTIONED.value, f"bot:{ADMIN}")
    chat.click("Отклонить жалобу")
    assert "Открытых жалоб нет" in chat.text()
    assert service.report_queue() == []

    assert_no_telegram_ids(harness)
    assert_valid_html(harness)


def test_stale_and_forged_report_buttons(harness: BotHarness) -> None:
    service = attach_board(harness)
    data = seed(service)
    chat = harness.chat(ADMIN)
    chat.send("/board")
    # `press` returns at the bot's first call after it; the screen is checked once the edit has landed.
    chat.press(BoardReportAction(id="no-such-report", action=ReportAction.DISMISS, pos=0).pack())
    wait_until(lambda: "Жалоба не найдена" in chat.text(), 30, message="refusal shown")
    assert "Жалоба 1 из 5" in chat.text()
    # Another moderator settled the first report meanwhile: a stale position shows what is there now.
    service.dismiss(data.reports["cheap1"], "cli:someone")
    chat.press(BoardQueue(pos=40).pack())
    wait_until(lambda: "Жалоба 4 из 4" in chat.text(), 30, message="the last report shown")
    chat.press(BoardQueue(pos=-3).pack())
    wait_until(lambda: "Жалоба 1 из 4" in chat.text(), 30, message="the first report shown")
    assert_no_telegram_ids(harness)


def test_without_the_board_there_is_no_board_section(harness: BotHarness) -> None:
    chat = harness.chat(ADMIN)
    chat.send("/start")
    assert not any("Доска" in label for label in chat.buttons())
    chat.send("/board")
    assert "не подключена" in chat.text()


def test_cards_cut_long_texts_and_show_hidden_characters() -> None:
    from board.service import BoardStats, ReportView

    now = utcnow()
    long_ad = ReportView(
        id="r1",
        target="ad",
        reason="look\u202eevil",
        created_at=now,
        status="open",
        reported="h1",
        reporter="h2",
        reported_banned=True,
        reporter_banned=False,
        weight=50,
        ad_id="a1",
        ad_title="T" * 300,
        ad_status="reported",
        ad_reports=4,
        content="x" * 5000,
        last_messages=[("h1", "text", "m" * 4000)] * 20,
    )
    text, _markup = report_card("en", long_ad, 0, 1, False, now)
    assert len(text) < 3000 and "\\u202e" in text and "\u202e" not in text and "(already banned)" in text
    stats = BoardStats(now, 0, 0, 0, 0, 0, 0, 0, 0, [])
    assert "Accept rate: —" in stats_screen("en", stats)[0]
