"""`run_cli.py board …`: the anonymous board's statistics and report queue, and moderation by report id.

Thin commands over `board.service.BoardService` (imported inside the commands, so `--help` stays light).
Users appear only by their opaque handles, never by Telegram id; everything they wrote is printed escaped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from backend.cli.base import (
    Context,
    actor,
    ago,
    confirm_or_refuse,
    counted,
    emit_json,
    json_option,
    pass_context,
    say,
    table,
    yes_option,
)

MAX_DAYS = 90
MAX_LIMIT = 500
CELL_LIMIT = 40
# Report ids are URL-safe tokens, and some start with "-": taken as the id, not as an unknown option (and `-h…`
# is not help: these commands spell it `--help` only).
TAKES_REPORT_ID = {"ignore_unknown_options": True, "help_option_names": ["--help"]}
TARGET_NAMES = {"ad": "an ad", "invite": "an invitation", "chat": "a chat"}


@contextmanager
def _refusals() -> Iterator[None]:
    """A `BoardError` (unknown report, no ad to hide) becomes one line in English and exit code 1."""
    from board.errors import BoardError
    from board.texts import t
    from common.validation import printable

    try:
        yield
    except BoardError as error:
        raise click.ClickException(printable(t("en", f"error.{error.code}", **error.values))) from None


def _cell(text: str, limit: int = CELL_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.group("board")
def board() -> None:
    """The anonymous board: statistics, reports, moderation."""


@board.command("stats")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    default=1,
    show_default=True,
    help=f"The period: the last N days (1 to {MAX_DAYS}).",
)
@json_option
@pass_context
def stats(context: Context, days: int, as_json: bool) -> None:
    """Ads, invitations, chats and reports over the last N days (with a line per day)."""
    data = context.plane().board.stats(days)
    if as_json:
        emit_json({"days": days, **data.to_json()})
        return
    rate = "-" if data.accept_rate is None else f"{data.accept_rate:.0%}"
    lines = [
        ("Period", f"the last {days} day{'s' if days != 1 else ''} (since {data.since:%Y-%m-%d %H:%M} UTC)"),
        ("Ads posted", str(data.ads_posted)),
        ("Ads open now", str(data.ads_open)),
        ("Invites sent", str(data.invites_sent)),
        ("Invites accepted", str(data.invites_accepted)),
        ("Invites declined", str(data.invites_declined)),
        ("Accept rate", rate),
        ("Active chats", str(data.chats_active)),
        ("Reports open", str(data.reports_open)),
        ("Reports new", str(data.reports_new)),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    if days > 1:
        rows = [
            [str(day.get(key, "")) for key in ("day", "ads", "invites", "accepted", "declined")] for day in data.per_day
        ]
        click.echo("")
        click.echo(table(["DAY", "ADS", "INVITES", "ACCEPTED", "DECLINED"], rows))


@board.command("reports")
@click.option("--all", "everything", is_flag=True, help="Also resolved reports (dismissed, actioned), with a status.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=20, show_default=True, help="At most this many reports."
)
@json_option
@pass_context
def reports(context: Context, everything: bool, limit: int, as_json: bool) -> None:
    """The report queue, oldest first (reported users by their opaque handles)."""
    from datetime import UTC, datetime

    from database.board_models import ReportStatus

    service = context.plane().board
    statuses = list(ReportStatus) if everything else [ReportStatus.OPEN]
    found = [(status.value, view) for status in statuses for view in service.report_queue(limit, status)]
    if everything:  # each status's oldest `limit`, merged: the oldest `limit` of all
        found = sorted(found, key=lambda item: item[1].created_at)[:limit]
    if as_json:
        emit_json([{**view.to_json(), "status": status} for status, view in found])
        return
    if not found:
        click.echo("no reports" if everything else "no open reports")
        return
    now = datetime.now(UTC)
    headers = ["ID", "TARGET", "REASON", "REPORTED", "AD", "AGE"]
    rows = []
    for status, view in found:
        row = [
            view.id,
            view.target,
            _cell(view.reason) or "-",
            view.reported + (" (banned)" if view.reported_banned else ""),
            _cell(view.ad_title) or "-",
            ago((now - view.created_at).total_seconds()),
        ]
        rows.append([*row, status] if everything else row)
    click.echo(table([*headers, "STATUS"] if everything else headers, rows))
    if not everything:
        click.echo(f"\n{len(found)} open report{'s' if len(found) != 1 else ''} shown")


@board.command("show", context_settings=TAKES_REPORT_ID)
@click.argument("report_id")
@json_option
@pass_context
def show(context: Context, report_id: str, as_json: bool) -> None:
    """One report in full: the reported content and the chat's last messages."""
    with _refusals():
        view = context.plane().board.get_report(report_id)
    if as_json:
        emit_json(view.to_json())
        return
    lines = [
        ("Report", view.id),
        ("Target", view.target),
        ("Filed", f"{view.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("Status", view.status + (f" (by {view.resolved_by})" if view.resolved_by else "")),
        ("Reported", view.reported + (" (banned)" if view.reported_banned else "")),
        ("Reporter", (view.reporter or "the board itself") + (" (banned)" if view.reporter_banned else "")),
        ("Weight", f"{view.weight / 100:g} (reporter's dismissed reports: {view.reporter_dismissed})"),
        ("Reason", view.reason or "-"),
        ("Ad", view.ad_title or "-"),
    ]
    if view.ad_title:
        lines.append(("Ad state", f"{view.ad_status}, {view.ad_reports} report(s)"))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    if view.content:
        click.echo("\nAd text:" if view.target == "ad" else "\nInvitation:")
        for line in view.content.splitlines():
            say(f"  {line}")
    if view.last_messages:
        click.echo("\nLast messages:")
        for handle, kind, text in view.last_messages:
            say(f"  {handle}: " + (f"[{kind}] " if kind != "text" else "") + " ".join(text.split()))


@board.command("ban", context_settings=TAKES_REPORT_ID)
@click.argument("report_id")
@click.option("--reason", default="", help="Why (kept with the ban; the report's reason by default).")
@yes_option
@pass_context
def ban(context: Context, report_id: str, reason: str, yes: bool) -> None:
    """Ban the user a report is about: their ads hide, their chats end, their open reports close (asks first)."""
    service = context.plane().board
    with _refusals():
        target = service.get_report(report_id)
        confirm_or_refuse(
            yes,
            f"Ban {target.reported}? Their ads hide and their chats end (partners are told); there is no unban.",
        )
        view = service.ban(report_id, actor(), reason)
    say(f"banned {view.reported} (report {view.id})")


@board.command("dismiss", context_settings=TAKES_REPORT_ID)
@click.argument("report_id")
@pass_context
def dismiss(context: Context, report_id: str) -> None:
    """Close a report as unfounded (an ad hidden only by reports comes back)."""
    with _refusals():
        view = context.plane().board.dismiss(report_id, actor())
    say(f"report {view.id} dismissed")


@board.command("hide", context_settings=TAKES_REPORT_ID)
@click.argument("report_id")
@pass_context
def hide(context: Context, report_id: str) -> None:
    """Hide the ad a report is about and close every open report on it."""
    from common.validation import printable

    service = context.plane().board
    with _refusals():
        target = service.get_report(report_id).target
        if target != "ad":  # an invitation's ad is the reporter's own, and a chat's may be
            about = TARGET_NAMES.get(target, printable(target))
            raise click.ClickException(f"report {printable(report_id)} is about {about}, not an ad: ban or dismiss it")
        view = service.hide_ad(report_id, actor())
    say(f"ad '{view.ad_title}' hidden (report {view.id})")


@board.command("hidden")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, help="At most this many ads."
)
@json_option
@pass_context
def hidden(context: Context, limit: int, as_json: bool) -> None:
    """The ads moderators hid, newest first (their authors by opaque handle)."""
    found = context.plane().board.hidden_ads(limit)
    if as_json:
        emit_json([{"ad_id": ad_id, "title": title, "author": handle} for ad_id, title, handle in found])
        return
    if not found:
        click.echo("no hidden ads")
        return
    click.echo(table(["AD", "TITLE", "AUTHOR"], [[ad_id, _cell(title), handle] for ad_id, title, handle in found]))


@board.command("unhide", context_settings=TAKES_REPORT_ID)
@click.argument("ad_id")
@pass_context
def unhide(context: Context, ad_id: str) -> None:
    """Bring back an ad a moderator hid (its open reports are settled as reviewed)."""
    with _refusals():
        title = context.plane().board.unhide_ad(ad_id, actor())
    say(f"ad '{title}' is open again")


@board.command("reporter", context_settings=TAKES_REPORT_ID)
@click.argument("report_id")
@click.option("--ban", "ban_them", is_flag=True, help="Ban the reporter (final), dismissing what they filed.")
@click.option("--dismiss-all", is_flag=True, help="Dismiss every open report the reporter filed.")
@click.option("--restore", is_flag=True, help="Bring back every ad the reporter's reports keep hidden.")
@yes_option
@pass_context
def reporter(context: Context, report_id: str, ban_them: bool, dismiss_all: bool, restore: bool, yes: bool) -> None:
    """Act on whoever filed a report (for the board's own false-reports report: on whom it is about); asks first."""
    if [ban_them, dismiss_all, restore].count(True) != 1:
        raise click.UsageError("say what to do: exactly one of --ban, --dismiss-all, --restore")
    service = context.plane().board
    with _refusals():
        reach = service.reporter_reach(report_id)
        reports = counted(reach.reports, "open report")
        if ban_them:
            question = f"Ban the reporter (there is no unban) and dismiss their {reports}?"
        elif dismiss_all:
            question = f"Dismiss the reporter's {reports}?"
        else:
            question = (
                f"Bring back {counted(reach.ads_restored, 'ad')} their reports hid, settling every report on them?"
            )
        confirm_or_refuse(yes, question)
        if ban_them:
            outcome = service.ban_reporter(report_id, actor())
        elif dismiss_all:
            outcome = service.dismiss_reporter(report_id, actor())
        else:
            outcome = service.restore_reporter(report_id, actor())
    say(f"{outcome.reports} report(s) settled, {outcome.ads_restored} ad(s) back")
