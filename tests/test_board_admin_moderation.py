"""The admin bot's and the CLI's moderation beyond one report: acting on a reporter (dismiss all of theirs,
restore what they hid, ban them — each confirmed with what it touches), the board's own report about a false
reporter, the hidden ads with Unhide, and a stale button that says who settled the report."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from backend.cli import cli
from board.service import BoardService
from bot.callbacks import BoardReportAction, ReportAction
from database.board_models import ReportTarget
from tests.support.bot_harness import BotHarness
from tests.support.stack import wait_until
from tests.test_board_admin import ADMIN, DAVE, OTHER_ADMIN, ad_status, assert_no_telegram_ids, attach_board, seed
from tests.test_board_cli import seeded


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN, OTHER_ADMIN}))
    yield running
    running.close()


def test_acting_on_a_reporter_from_the_queue(harness: BotHarness) -> None:
    service = attach_board(harness)
    data = seed(service)
    dave = data.users["dave"].public_id
    chat = harness.chat(ADMIN)
    chat.send("/board")
    chat.click("Жалобы")
    assert "Жалоба 1 из 5" in chat.text() and f"<code>{dave}</code>" in chat.text()  # dave reported the phones

    # Dismiss everything dave filed: the card asks first, counting what it touches.
    chat.click("Отклонить все его жалобы")
    assert f"Отклонить все открытые жалобы <code>{dave}</code> (2)?" in chat.text()
    chat.click("Отмена")
    assert "Жалоба 1 из 5" in chat.text()
    chat.click("Отклонить все его жалобы")
    chat.click("Да")
    assert "🧹 Отклонено жалоб — 2, возвращено объявлений — 1." in chat.text()
    assert ad_status(data, "cheap") == "open"  # bob's report alone no longer weighs enough to hide it
    assert "Жалоба 1 из 3" in chat.text()

    # The same button again, from the old card: it says it was settled — by this very moderator.
    # `press` returns at the bot's first call after it (the button's answer); the screen's edit comes after.
    chat.press(BoardReportAction(id=data.reports["cheap1"], action=ReportAction.DISMISS).pack())
    wait_until(lambda: "Вы уже рассмотрели эту жалобу." in chat.text(), 30, message="settled by you")
    other = harness.chat(OTHER_ADMIN)
    other.send("/board")
    other.press(BoardReportAction(id=data.reports["cheap1"], action=ReportAction.DISMISS).pack())
    wait_until(lambda: "Эту жалобу уже рассмотрел другой модератор." in other.text(), 30, message="settled by another")
    assert_no_telegram_ids(harness)


def test_a_false_reporter_is_reported_by_the_board_and_banned(harness: BotHarness) -> None:
    service = attach_board(harness)
    data = seed(service)
    dave = data.users["dave"]
    extra = service.create_ad(data.users["alice"], "Lamp for the desk", "A desk lamp, warm light", "sale").id
    third = service.report(dave, ReportTarget.AD, extra, "ugly")
    for report in (data.reports["cheap1"], data.reports["flat"], third):
        service.dismiss(report, "cli:someone")
    flag = next(r for r in service.report_queue(50) if r.target == "reporter")
    assert flag.reported == dave.public_id and flag.reporter == ""

    chat = harness.chat(ADMIN)
    chat.send("/board")
    chat.click("Жалобы")
    while "ложные жалобы" not in chat.text():
        chat.click("▶️")
    assert "Доска сама сообщает: у этого человека отклонено уже 3 жалобы." in chat.text()
    assert "⛔ Забанить" not in chat.buttons()  # it is about the reporter: the reporter's row acts
    chat.click("Забанить жалобщика")
    assert "Бан окончательный" in chat.text() and f"<code>{dave.public_id}</code>" in chat.text()
    chat.click("Да, забанить")
    assert "⛔ Жалобщик забанен" in chat.text()
    assert service.user(DAVE).banned
    assert service.get_report(flag.id).status == "actioned"


def test_hidden_ads_come_back_only_by_a_moderator(harness: BotHarness) -> None:
    service = attach_board(harness)
    data = seed(service)
    chat = harness.chat(ADMIN)
    chat.send("/board")
    chat.click("Жалобы")
    while "Flat to rent" not in chat.text():
        chat.click("▶️")
    chat.click("Скрыть объявление")
    assert ad_status(data, "flat") == "hidden"
    chat.click("📋 Доска")
    chat.click("Скрытые объявления")
    assert "Скрытые модераторами объявления</b> (1)" in chat.text() and "Flat to rent" in chat.text()
    assert f"<code>{data.users['erin'].public_id}</code>" in chat.text()
    chat.click("Вернуть 1")
    assert "↩️ Объявление «Flat to rent» снова открыто." in chat.text() and "Скрытых объявлений нет." in chat.text()
    assert ad_status(data, "flat") == "open"
    assert_no_telegram_ids(harness)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str, secret_key: str) -> dict[str, str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BOARD_HIDE_AFTER_REPORTS", "2")
    return {"REDIS_URL": redis_url, "DATABASE_URL": sqlite_url, "SECRET_KEY": secret_key}


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, input=input_text)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_hides_unhides_and_acts_on_reporters(env: dict[str, str]) -> None:
    data = seeded(env["DATABASE_URL"])
    service: BoardService = data.service
    assert run("board", "hide", data.reports["flat"])[0] == 0
    code, out, _ = run("board", "hidden", "--json")
    [hidden] = json.loads(out)
    assert code == 0 and hidden["title"] == "Flat to rent" and hidden["author"] == data.users["erin"].public_id
    code, out, _ = run("board", "unhide", hidden["ad_id"])
    assert code == 0 and "open again" in out
    code, _, err = run("board", "unhide", hidden["ad_id"])
    assert code == 1 and "not hidden" in err
    code, _, err = run("board", "reporter", data.reports["cheap1"])
    assert code == 2 and "exactly one of" in err
    code, out, err = run("board", "reporter", data.reports["cheap1"], "--dismiss-all", input_text="n\n")
    assert code == 1 and "Dismiss the reporter's 1 open report?" in err  # not confirmed: nothing changed
    assert service.get_report(data.reports["cheap1"]).status == "open"
    code, out, _ = run("board", "reporter", data.reports["cheap1"], "--dismiss-all", "--yes")
    assert code == 0 and "1 report(s) settled, 1 ad(s) back" in out
    assert service.get_report(data.reports["cheap1"]).status == "dismissed"
