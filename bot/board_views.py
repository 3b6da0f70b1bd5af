"""The admin bot's Board section as texts and keyboards: statistics, the report queue one card at a time (with the
reported content, the ad's status and report count, who reported and how their reports went), confirmations
that say what an action will do, and the list of ads moderators hid. Pure functions over `board`'s views:
users appear only by their opaque handles, and everything they wrote is escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram.types import InlineKeyboardMarkup

from board.errors import BoardError
from board.service import BoardStats, ModerationOutcome, ReportView
from bot import views
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
from bot.texts import has_text, t
from common.validation import printable

Button = views.Button
CONTENT_LIMIT = 800  # characters of an ad's text or an invitation shown on a card
MESSAGES_SHOWN = 8
MESSAGE_LIMIT = 150  # characters of each chat message shown
HIDDEN_PAGE = 8


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
        [Button(text=t(lang, "board.btn.hidden"), callback_data=BoardHidden(pos=0).pack())],
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
    """Only a report about an ad that is up (or hidden by reports) offers to hide it. An invitation's ad is the
    reporter's own, and a chat's may be too; when a chat's ad is the culprit's, banning them hides it."""
    return report.ad_id is not None and report.target == "ad" and report.ad_status in ("open", "reported")


def _ad_line(lang: str, report: ReportView) -> str:
    status_key = f"board.ad_status.{report.ad_status}"
    status = t(lang, status_key) if has_text(lang, status_key) else escape(report.ad_status)
    return t(
        lang,
        "board.report.ad",
        title=user_text(report.ad_title, 200, one_line=True),
        status=status,
        reports=report.ad_reports,
    )


def report_card(
    lang: str, report: ReportView, pos: int, total: int, has_next: bool, now: datetime, notice: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    """One report: who (handles only), why, what was reported and how it stands, the chat's last messages, how the
    reporter's reports went; the actions on the report and on its reporter."""
    age = views.ago(lang, max(0.0, (now - report.created_at).total_seconds()))
    banned = t(lang, "board.report.banned") if report.reported_banned else ""
    lines = [
        t(lang, "board.report.title", n=pos + 1, total=max(total, pos + 1), target=_target(lang, report.target),
          age=age),
        t(lang, "board.report.reported", handle=escape(report.reported), banned=banned),
    ]  # fmt: skip
    if report.reporter:
        lines.append(
            t(
                lang,
                "board.report.reporter",
                handle=escape(report.reporter),
                banned=t(lang, "board.report.banned") if report.reporter_banned else "",
                weight=f"{report.weight / 100:g}",
                dismissed=report.reporter_dismissed,
            )
        )
    if report.target == "reporter":
        lines.append(t(lang, "board.report.false_reports", n=report.reporter_dismissed))
    else:
        reason = user_text(report.reason, 500, one_line=True) if report.reason else t(lang, "board.report.no_reason")
        lines.append(t(lang, "board.report.reason", reason=reason))
    if report.ad_title:
        lines.append(_ad_line(lang, report))
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
    on_reporter = []
    if report.reporter or report.target == "reporter":
        on_reporter = [
            action("board.btn.ban_reporter", ReportAction.BAN_REPORTER),
            action("board.btn.dismiss_reporter", ReportAction.DISMISS_REPORTER),
            action("board.btn.restore", ReportAction.RESTORE),
        ]
    first_row = [action("board.btn.dismiss", ReportAction.DISMISS)]
    if report.target != "reporter":
        first_row.insert(0, action("board.btn.ban", ReportAction.BAN))
    return text, views.keyboard(
        first_row,
        [action("board.btn.hide", ReportAction.HIDE)] if can_hide(report) else [],
        on_reporter[:1],
        on_reporter[1:],
        moves,
        [_back_to_board(lang)],
    )


def confirm(lang: str, report: ReportView, pos: int, act: ReportAction, reach: ModerationOutcome | None = None
            ) -> tuple[str, InlineKeyboardMarkup]:  # fmt: skip
    """The question before an action that cannot be undone or touches more than one thing, naming what it will
    do (with counts); `act` is the confirmed action."""
    handle = escape(report.reported if act is ReportAction.BAN_CONFIRMED or not report.reporter else report.reporter)
    key = {
        ReportAction.BAN_CONFIRMED: "board.ban.confirm",
        ReportAction.BAN_REPORTER_CONFIRMED: "board.ban_reporter.confirm",
        ReportAction.DISMISS_REPORTER_CONFIRMED: "board.dismiss_reporter.confirm",
        ReportAction.RESTORE_CONFIRMED: "board.restore.confirm",
    }[act]
    yes_key = "board.btn.yes_ban" if act in (ReportAction.BAN_CONFIRMED, ReportAction.BAN_REPORTER_CONFIRMED) else (
        "board.btn.yes")  # fmt: skip
    text = t(lang, key, handle=handle, reports=reach.reports if reach else 0, ads=reach.ads_restored if reach else 0)
    yes = BoardReportAction(id=report.id, action=act, pos=pos).pack()
    return text, views.keyboard(
        [
            Button(text=t(lang, yes_key), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=BoardQueue(pos=pos).pack()),
        ]
    )


def hidden_list(
    lang: str, ads: list[tuple[str, str, str]], pos: int, total: int, notice: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    """The ads moderators hid, newest first, each with its Unhide button."""
    lines = [t(lang, "board.hidden.title", n=total)]
    if not ads:
        lines.append(t(lang, "board.hidden.none"))
    rows: list[list[Button]] = []
    for index, (ad_id, title, handle) in enumerate(ads, start=pos + 1):
        lines.append(t(lang, "board.hidden.line", n=index, title=user_text(title, 80, one_line=True),
                       handle=escape(handle)))  # fmt: skip
        label = t(lang, "board.btn.unhide", n=index)
        rows.append([Button(text=label, callback_data=BoardUnhide(id=ad_id, pos=pos).pack())])
    moves = []
    if pos > 0:
        moves.append(Button(text=t(lang, "btn.prev"), callback_data=BoardHidden(pos=max(0, pos - HIDDEN_PAGE)).pack()))
    if pos + HIDDEN_PAGE < total:
        moves.append(Button(text=t(lang, "btn.next"), callback_data=BoardHidden(pos=pos + HIDDEN_PAGE).pack()))
    text = "\n".join(lines)
    return (f"{notice}\n\n{text}" if notice else text), views.keyboard(*rows, moves, [_back_to_board(lang)])


def board_error(lang: str, error: BoardError) -> str:
    """A refusal of the board's service, in the admin's words (the board's own text when the bot has none)."""
    from board.texts import t as board_text

    key = f"board.err.{error.code}"
    message = t(lang, key) if has_text(lang, key) else escape(board_text(lang, f"error.{error.code}", **error.values))
    return t(lang, "board.err", error=message)
