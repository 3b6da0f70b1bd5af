"""The Board section: the anonymous board's statistics (today, the week), its report queue one report at a time
(Ban, Dismiss, Hide ad; and on the reporter: ban, dismiss all of theirs, restore what they hid) and the ads
moderators hid (Unhide). Rendering is in `bot.board_views`; each action is one call to `board`'s service."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from board.errors import BoardError
from board.service import BoardService
from bot import views
from bot.board_views import (
    HIDDEN_PAGE,
    board_error,
    confirm,
    empty_queue,
    hidden_list,
    report_card,
    stats_screen,
    user_text,
)
from bot.callbacks import (
    BoardAction,
    BoardHidden,
    BoardQueue,
    BoardReportAction,
    BoardStatsView,
    BoardUnhide,
    Menu,
    MenuAction,
    ReportAction,
)
from bot.handlers.base import actor, show
from bot.services import BotServices
from bot.texts import t

Button = views.Button
WEEK_DAYS = 7
MAX_POSITION = 498  # the service returns at most 500 reports; one more than the card shows tells if there is a next
CONFIRMED = {
    ReportAction.BAN: ReportAction.BAN_CONFIRMED,
    ReportAction.BAN_REPORTER: ReportAction.BAN_REPORTER_CONFIRMED,
    ReportAction.DISMISS_REPORTER: ReportAction.DISMISS_REPORTER_CONFIRMED,
    ReportAction.RESTORE: ReportAction.RESTORE_CONFIRMED,
}


# ---- handlers -------------------------------------------------------------------------------------------------


async def _board(event: Message | CallbackQuery, services: BotServices, lang: str) -> BoardService | None:
    if services.board is None:
        menu = Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())
        await show(event, t(lang, "board.off"), views.keyboard([menu]))
    return services.board


async def board_home(event: Message | CallbackQuery, services: BotServices, lang: str) -> None:
    board = await _board(event, services, lang)
    if board is not None:
        await show(event, *stats_screen(lang, await services.call(board.stats, 1)))


async def board_stats(query: CallbackQuery, callback_data: BoardStatsView, services: BotServices, lang: str) -> None:
    board = await _board(query, services, lang)
    if board is None:
        return
    week = callback_data.action == BoardAction.WEEK
    await show(query, *stats_screen(lang, await services.call(board.stats, WEEK_DAYS if week else 1), week))


async def render_queue(
    event: Message | CallbackQuery, board: BoardService, services: BotServices, lang: str, pos: int, notice: str = ""
) -> None:
    """The open report at `pos` (or the last one, if the queue got shorter), with `notice` above it."""
    pos = max(0, min(pos, MAX_POSITION))
    reports = await services.call(board.report_queue, pos + 2)
    if not reports:
        await show(event, *empty_queue(lang, notice))
        return
    pos = min(pos, len(reports) - 1)
    total = (await services.call(board.stats, 1)).reports_open
    card = report_card(lang, reports[pos], pos, total, len(reports) > pos + 1, datetime.now(UTC), notice)
    await show(event, *card)


async def queue(query: CallbackQuery, callback_data: BoardQueue, services: BotServices, lang: str) -> None:
    board = await _board(query, services, lang)
    if board is not None:
        await render_queue(query, board, services, lang, callback_data.pos)


async def _settle(board: BoardService, services: BotServices, lang: str, act: ReportAction, report_id: str,
                  who: str) -> str:  # fmt: skip
    """Do a confirmed action; the notice saying what it did."""
    if act is ReportAction.BAN_CONFIRMED:
        report = await services.call(board.ban, report_id, who)
        return t(lang, "board.done.ban", handle=escape(report.reported))
    if act is ReportAction.DISMISS:
        await services.call(board.dismiss, report_id, who)
        return t(lang, "board.done.dismiss")
    if act is ReportAction.HIDE:
        report = await services.call(board.hide_ad, report_id, who)
        return t(lang, "board.done.hide", title=user_text(report.ad_title, 200, one_line=True))
    if act is ReportAction.BAN_REPORTER_CONFIRMED:
        outcome = await services.call(board.ban_reporter, report_id, who)
        return t(lang, "board.done.ban_reporter", reports=outcome.reports, ads=outcome.ads_restored)
    if act is ReportAction.DISMISS_REPORTER_CONFIRMED:
        outcome = await services.call(board.dismiss_reporter, report_id, who)
        return t(lang, "board.done.dismiss_reporter", reports=outcome.reports, ads=outcome.ads_restored)
    outcome = await services.call(board.restore_reporter, report_id, who)
    return t(lang, "board.done.restore", reports=outcome.reports, ads=outcome.ads_restored)


async def act(query: CallbackQuery, callback_data: BoardReportAction, services: BotServices, lang: str) -> None:
    board = await _board(query, services, lang)
    if board is None:
        return
    who = actor(query.from_user)
    try:
        confirmed = CONFIRMED.get(callback_data.action)
        if confirmed is not None:  # ask first, naming what it will do
            report = await services.call(board.get_report, callback_data.id)
            if report.status != "open":
                raise BoardError("report_closed_by_you" if report.resolved_by == who else "report_closed", 409)
            reach = None
            if callback_data.action is not ReportAction.BAN:
                reach = await services.call(board.reporter_reach, callback_data.id)
            await show(query, *confirm(lang, report, callback_data.pos, confirmed, reach))
            return
        notice = await _settle(board, services, lang, callback_data.action, callback_data.id, who)
    except BoardError as error:
        notice = board_error(lang, error)
    # The acted-on report has left the open queue: the one now at the same position is the next.
    await render_queue(query, board, services, lang, callback_data.pos, notice)


async def render_hidden(
    event: Message | CallbackQuery, board: BoardService, services: BotServices, lang: str, pos: int, notice: str = ""
) -> None:
    pos = max(0, min(pos, 10_000))
    total = await services.call(board.hidden_count)
    if pos >= total > 0:
        pos = max(0, (total - 1) // HIDDEN_PAGE * HIDDEN_PAGE)
    ads = await services.call(board.hidden_ads, HIDDEN_PAGE, pos)
    await show(event, *hidden_list(lang, ads, pos, total, notice))


async def hidden(query: CallbackQuery, callback_data: BoardHidden, services: BotServices, lang: str) -> None:
    board = await _board(query, services, lang)
    if board is not None:
        await render_hidden(query, board, services, lang, callback_data.pos)


async def unhide(query: CallbackQuery, callback_data: BoardUnhide, services: BotServices, lang: str) -> None:
    board = await _board(query, services, lang)
    if board is None:
        return
    try:
        title = await services.call(board.unhide_ad, callback_data.id, actor(query.from_user))
        notice = t(lang, "board.done.unhide", title=user_text(title, 200, one_line=True))
    except BoardError as error:
        notice = board_error(lang, error)
    await render_hidden(query, board, services, lang, callback_data.pos, notice)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(board_home, Command("board"))
    router.callback_query.register(board_home, Menu.filter(F.action == MenuAction.BOARD))
    router.callback_query.register(board_stats, BoardStatsView.filter())
    router.callback_query.register(queue, BoardQueue.filter())
    router.callback_query.register(act, BoardReportAction.filter())
    router.callback_query.register(hidden, BoardHidden.filter())
    router.callback_query.register(unhide, BoardUnhide.filter())
    return router
