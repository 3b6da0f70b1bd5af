"""The Board section: the anonymous board's statistics (today, the week), its report queue one report at a time
(Ban, Dismiss, Hide ad; and on the reporter: ban, dismiss all of theirs, restore what they hid) and the ads
moderators hid (Unhide). Rendering is in `bot.board_views`; each action is one call to `board`'s service."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiogram import F
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
from bot.handlers.base import RouterSpec, actor, show
from bot.services import BotServices
from bot.texts import t

router = RouterSpec(__name__)
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


async def _board(event: Message | CallbackQuery, fleet: BotServices, lang: str) -> BoardService | None:
    if fleet.board is None:
        menu = Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())
        await show(event, t(lang, "board.off"), views.keyboard([menu]))
    return fleet.board


@router.message(Command("board"))
@router.callback_query(Menu.filter(F.action == MenuAction.BOARD))
async def board_home(event: Message | CallbackQuery, fleet: BotServices, lang: str) -> None:
    service = await _board(event, fleet, lang)
    if service is not None:
        await show(event, *stats_screen(lang, await fleet.call(service.stats, 1)))


@router.callback_query(BoardStatsView.filter())
async def board_stats(query: CallbackQuery, callback_data: BoardStatsView, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is None:
        return
    week = callback_data.action == BoardAction.WEEK
    await show(query, *stats_screen(lang, await fleet.call(service.stats, WEEK_DAYS if week else 1), week))


async def render_queue(
    event: Message | CallbackQuery, service: BoardService, fleet: BotServices, lang: str, pos: int, notice: str = ""
) -> None:
    """The open report at `pos` (or the last one, if the queue got shorter), with `notice` above it."""
    pos = max(0, min(pos, MAX_POSITION))
    reports = await fleet.call(service.report_queue, pos + 2)
    if not reports:
        await show(event, *empty_queue(lang, notice))
        return
    pos = min(pos, len(reports) - 1)
    total = (await fleet.call(service.stats, 1)).reports_open
    card = report_card(lang, reports[pos], pos, total, len(reports) > pos + 1, datetime.now(UTC), notice)
    await show(event, *card)


@router.callback_query(BoardQueue.filter())
async def queue(query: CallbackQuery, callback_data: BoardQueue, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is not None:
        await render_queue(query, service, fleet, lang, callback_data.pos)


async def _settle(service: BoardService, fleet: BotServices, lang: str, act: ReportAction, report_id: str,
                  who: str) -> str:  # fmt: skip
    """Do a confirmed action; the notice saying what it did."""
    if act is ReportAction.BAN_CONFIRMED:
        report = await fleet.call(service.ban, report_id, who)
        return t(lang, "board.done.ban", handle=escape(report.reported))
    if act is ReportAction.DISMISS:
        await fleet.call(service.dismiss, report_id, who)
        return t(lang, "board.done.dismiss")
    if act is ReportAction.HIDE:
        report = await fleet.call(service.hide_ad, report_id, who)
        return t(lang, "board.done.hide", title=user_text(report.ad_title, 200, one_line=True))
    if act is ReportAction.BAN_REPORTER_CONFIRMED:
        outcome = await fleet.call(service.ban_reporter, report_id, who)
        return t(lang, "board.done.ban_reporter", reports=outcome.reports, ads=outcome.ads_restored)
    if act is ReportAction.DISMISS_REPORTER_CONFIRMED:
        outcome = await fleet.call(service.dismiss_reporter, report_id, who)
        return t(lang, "board.done.dismiss_reporter", reports=outcome.reports, ads=outcome.ads_restored)
    outcome = await fleet.call(service.restore_reporter, report_id, who)
    return t(lang, "board.done.restore", reports=outcome.reports, ads=outcome.ads_restored)


@router.callback_query(BoardReportAction.filter())
async def act(query: CallbackQuery, callback_data: BoardReportAction, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is None:
        return
    who = actor(query.from_user)
    try:
        confirmed = CONFIRMED.get(callback_data.action)
        if confirmed is not None:  # ask first, naming what it will do
            report = await fleet.call(service.get_report, callback_data.id)
            if report.status != "open":
                raise BoardError("report_closed_by_you" if report.resolved_by == who else "report_closed", 409)
            reach = None
            if callback_data.action is not ReportAction.BAN:
                reach = await fleet.call(service.reporter_reach, callback_data.id)
            await show(query, *confirm(lang, report, callback_data.pos, confirmed, reach))
            return
        notice = await _settle(service, fleet, lang, callback_data.action, callback_data.id, who)
    except BoardError as error:
        notice = board_error(lang, error)
    # The acted-on report has left the open queue: the one now at the same position is the next.
    await render_queue(query, service, fleet, lang, callback_data.pos, notice)


async def render_hidden(
    event: Message | CallbackQuery, service: BoardService, fleet: BotServices, lang: str, pos: int, notice: str = ""
) -> None:
    pos = max(0, min(pos, 10_000))
    total = await fleet.call(service.hidden_count)
    if pos >= total > 0:
        pos = max(0, (total - 1) // HIDDEN_PAGE * HIDDEN_PAGE)
    ads = await fleet.call(service.hidden_ads, HIDDEN_PAGE, pos)
    await show(event, *hidden_list(lang, ads, pos, total, notice))


@router.callback_query(BoardHidden.filter())
async def hidden(query: CallbackQuery, callback_data: BoardHidden, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is not None:
        await render_hidden(query, service, fleet, lang, callback_data.pos)


@router.callback_query(BoardUnhide.filter())
async def unhide(query: CallbackQuery, callback_data: BoardUnhide, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is None:
        return
    try:
        title = await fleet.call(service.unhide_ad, callback_data.id, actor(query.from_user))
        notice = t(lang, "board.done.unhide", title=user_text(title, 200, one_line=True))
    except BoardError as error:
        notice = board_error(lang, error)
    await render_hidden(query, service, fleet, lang, callback_data.pos, notice)
