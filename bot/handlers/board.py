"""The Board section: the anonymous board's statistics (today, the week) and its report queue, one report at a
time with Ban, Dismiss and Hide ad. Users appear only by their opaque handles; everything they wrote is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiogram import F
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from board.errors import BoardError
from board.service import BoardService, BoardStats, ReportView
from bot import views
from bot.callbacks import (
    BoardAction,
    BoardQueue,
    BoardReportAction,
    BoardStatsView,
    Menu,
    MenuAction,
    ReportAction,
)
from bot.handlers.base import RouterSpec, actor, show
from bot.services import BotServices
from bot.texts import has_text, t
from celery_app.validation import printable

router = RouterSpec(__name__)
Button = views.Button
WEEK_DAYS = 7
MAX_POSITION = 498  # the service returns at most 500 reports; one more than the card shows tells if there is a next
CONTENT_LIMIT = 800  # characters of an ad's text or an invitation shown on a card
MESSAGES_SHOWN = 8
MESSAGE_LIMIT = 150  # characters of each chat message shown


# ---- pure rendering -------------------------------------------------------------------------------------------


def user_text(text: str, limit: int, one_line: bool = False) -> str:
    """Something a board user wrote, safe to show: cut to `limit`, invisible and reordering characters shown as
    escapes (a moderator must see what is really there), HTML-escaped."""
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    lines = text.split("\n")
    if one_line:
        lines = [" ".join(line.strip() for line in lines if line.strip())]
    return escape("\n".join(printable(line) for line in lines))


def accept_rate(stats: BoardStats) -> str:
    rate = stats.accept_rate
    return "—" if rate is None else f"{rate:.0%}"


def stats_screen(lang: str, shown: BoardStats, week: bool = False) -> tuple[str, InlineKeyboardMarkup]:
    """The last day's numbers, or the week's with a line per day."""
    lines = [
        t(lang, "board.title.week" if week else "board.title.today"),
        t(
            lang,
            "board.stats",
            ads_posted=shown.ads_posted,
            ads_open=shown.ads_open,
            invites_sent=shown.invites_sent,
            invites_accepted=shown.invites_accepted,
            invites_declined=shown.invites_declined,
            accept_rate=accept_rate(shown),
            chats_active=shown.chats_active,
            reports_open=shown.reports_open,
            reports_new=shown.reports_new,
        ),
    ]
    if week:
        lines.append("")
        lines.append(t(lang, "board.by_day"))
        lines += [
            t(
                lang,
                "board.day",
                day=escape(str(day.get("day", ""))),
                ads=day.get("ads", 0),
                invites=day.get("invites", 0),
                accepted=day.get("accepted", 0),
                declined=day.get("declined", 0),
            )
            for day in shown.per_day
        ]
    switch = (
        Button(text=t(lang, "board.btn.today"), callback_data=BoardStatsView(action=BoardAction.TODAY).pack())
        if week
        else Button(text=t(lang, "board.btn.week"), callback_data=BoardStatsView(action=BoardAction.WEEK).pack())
    )
    refresh = BoardStatsView(action=BoardAction.WEEK if week else BoardAction.TODAY).pack()
    return "\n".join(lines), views.keyboard(
        [
            Button(text=t(lang, "board.btn.reports", n=shown.reports_open), callback_data=BoardQueue(pos=0).pack()),
            switch,
        ],
        [
            Button(text=t(lang, "btn.refresh"), callback_data=refresh),
            Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack()),
        ],
    )


def _back_to_board(lang: str) -> Button:
    return Button(text=t(lang, "board.btn.board"), callback_data=BoardStatsView().pack())


def empty_queue(lang: str, notice: str = "") -> tuple[str, InlineKeyboardMarkup]:
    text = t(lang, "board.queue.empty")
    return (f"{notice}\n\n{text}" if notice else text), views.keyboard(
        [
            Button(text=t(lang, "btn.refresh"), callback_data=BoardQueue(pos=0).pack()),
            _back_to_board(lang),
        ]
    )


def _target(lang: str, target: str) -> str:
    key = f"board.target.{target}"
    return t(lang, key) if has_text(lang, key) else escape(target)


def can_hide(report: ReportView) -> bool:
    """Only a report about an ad offers to hide it. An invitation's ad is the reporter's own, and a chat's may be
    too; when a chat's ad is the culprit's, banning them hides it with their other ads."""
    return report.ad_id is not None and report.target == "ad"


def report_card(
    lang: str, report: ReportView, pos: int, total: int, has_next: bool, now: datetime, notice: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    """One report: who (handles only), why, what was reported, the chat's last messages; the actions."""
    age = views.ago(lang, max(0.0, (now - report.created_at).total_seconds()))
    banned = t(lang, "board.report.banned") if report.reported_banned else ""
    lines = [
        t(
            lang,
            "board.report.title",
            n=pos + 1,
            total=max(total, pos + 1),
            target=_target(lang, report.target),
            age=age,
        ),
        t(lang, "board.report.reported", handle=escape(report.reported), banned=banned),
        t(lang, "board.report.reporter", handle=escape(report.reporter)),
        t(
            lang,
            "board.report.reason",
            reason=user_text(report.reason, 500, one_line=True) if report.reason else t(lang, "board.report.no_reason"),
        ),
    ]
    if report.ad_title:
        lines.append(t(lang, "board.report.ad", title=user_text(report.ad_title, 200, one_line=True)))
    if report.content:
        lines.append(t(lang, "board.report.ad_text" if report.target == "ad" else "board.report.invite_text"))
        lines.append(f"<blockquote>{user_text(report.content, CONTENT_LIMIT)}</blockquote>")
    if report.target == "chat" or report.last_messages:
        lines.append(t(lang, "board.report.messages"))
        shown = report.last_messages[-MESSAGES_SHOWN:]
        if not shown:
            lines.append(t(lang, "board.report.no_messages"))
        for handle, kind, text in shown:
            said = user_text(text, MESSAGE_LIMIT, one_line=True)
            if kind != "text":
                said = f"[{escape(kind)}] {said}".rstrip()
            lines.append(f"<code>{escape(handle)}</code>: {said}")
    text = "\n".join(lines)
    if notice:
        text = f"{notice}\n\n{text}"

    def action(key: str, act: ReportAction) -> Button:
        return Button(text=t(lang, key), callback_data=BoardReportAction(id=report.id, action=act, pos=pos).pack())

    moves = []
    if pos > 0:
        moves.append(Button(text=t(lang, "btn.prev"), callback_data=BoardQueue(pos=pos - 1).pack()))
    moves.append(Button(text=t(lang, "btn.refresh"), callback_data=BoardQueue(pos=pos).pack()))
    if has_next:
        moves.append(Button(text=t(lang, "btn.next"), callback_data=BoardQueue(pos=pos + 1).pack()))
    return text, views.keyboard(
        [action("board.btn.ban", ReportAction.BAN), action("board.btn.dismiss", ReportAction.DISMISS)],
        [action("board.btn.hide", ReportAction.HIDE)] if can_hide(report) else [],
        moves,
        [_back_to_board(lang)],
    )


def ban_confirm(lang: str, report: ReportView, pos: int) -> tuple[str, InlineKeyboardMarkup]:
    yes = BoardReportAction(id=report.id, action=ReportAction.BAN_CONFIRMED, pos=pos).pack()
    return t(lang, "board.ban.confirm", handle=escape(report.reported)), views.keyboard(
        [
            Button(text=t(lang, "board.btn.yes_ban"), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=BoardQueue(pos=pos).pack()),
        ]
    )


def board_error(lang: str, error: BoardError) -> str:
    key = f"board.err.{error.code}"
    return t(lang, "board.err", error=t(lang, key) if has_text(lang, key) else escape(error.code))


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


@router.callback_query(BoardReportAction.filter())
async def act(query: CallbackQuery, callback_data: BoardReportAction, fleet: BotServices, lang: str) -> None:
    service = await _board(query, fleet, lang)
    if service is None:
        return
    who = actor(query.from_user)
    try:
        if callback_data.action == ReportAction.BAN:
            report = await fleet.call(service.get_report, callback_data.id)
            await show(query, *ban_confirm(lang, report, callback_data.pos))
            return
        if callback_data.action == ReportAction.BAN_CONFIRMED:
            report = await fleet.call(service.ban, callback_data.id, who)
            notice = t(lang, "board.done.ban", handle=escape(report.reported))
        elif callback_data.action == ReportAction.DISMISS:
            await fleet.call(service.dismiss, callback_data.id, who)
            notice = t(lang, "board.done.dismiss")
        else:
            report = await fleet.call(service.hide_ad, callback_data.id, who)
            notice = t(lang, "board.done.hide", title=user_text(report.ad_title, 200, one_line=True))
    except BoardError as error:
        notice = board_error(lang, error)
    # The acted-on report has left the open queue: the one now at the same position is the next.
    await render_queue(query, service, fleet, lang, callback_data.pos, notice)
