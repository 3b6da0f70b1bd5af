"""`run_cli.py accounts …`: thin commands over the accounts service. Phones are masked; secrets never printed.

This module holds the group, listing and showing, and starting, stopping, moving and removing; `import` lives
in `accounts_import`, `export` in `accounts_export`, `login` in `accounts_login`, and `op`/`ops` in `operations`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from backend.cli.base import (
    ACCOUNT_ID,
    ACCOUNT_STATUS,
    SECONDS,
    Context,
    LazyGroup,
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

if TYPE_CHECKING:
    from celery_app.account_state import AccountState

STATUS_ICONS = {
    "running": "🟢",
    "starting": "⏳",
    "stopping": "⏳",
    "login_pending": "🔑",
    "stopped": "⚪",
    "error": "⚠️",
    "unauthorized": "🚫",
    "banned": "⛔",
    "flood_wait": "🐢",
    "lost": "❓",
    "unknown": "❔",
}
VERDICT_ICONS = {"ok": "✅", "limited": "⚠️", "restricted": "⛔", "unauthorized": "🚫", "banned": "⛔"}


@click.group(
    "accounts",
    cls=LazyGroup,
    lazy_subcommands={
        "import": "backend.cli.accounts_import:import_accounts",
        "export": "backend.cli.accounts_export:export_accounts",
        "login": "backend.cli.accounts_login:login",
        "op": "backend.cli.operations:operate",
        "ops": "backend.cli.operations:list_operations",
        "set-proxy": "backend.cli.proxies:set_proxy",
    },
)
def accounts() -> None:
    """Telegram accounts: log in, import, export, start, stop, move, remove."""


def _who(view: Any) -> str:
    if view.username:
        return f"@{view.username}"
    return view.name or "-"


def _status_text(view: Any) -> str:
    text = f"{STATUS_ICONS.get(view.status, '')} {view.status}".strip()
    if view.status == "flood_wait" and view.flood_wait_until is not None:
        text += f" until {view.flood_wait_until.strftime('%H:%M:%S UTC')}"
    return text


def _check_text(view: Any) -> str:
    """The last check's verdict and how long ago, or "-" if never checked."""
    if not view.check_verdict or view.checked_at is None:
        return "-"
    from datetime import UTC, datetime

    age = ago((datetime.now(UTC) - view.checked_at).total_seconds())
    return f"{VERDICT_ICONS.get(view.check_verdict, '')} {view.check_verdict} ({age})".strip()


@accounts.command("list")
@click.option("--worker", help="Only this worker's accounts.")
@click.option("--status", type=ACCOUNT_STATUS, help="Only accounts in this status (`unknown`: no live report).")
@json_option
@pass_context
def list_accounts(context: Context, worker: str | None, status: str | None, as_json: bool) -> None:
    """List accounts with their live status."""
    views = context.plane().accounts.list_accounts(worker=worker, status=status)
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no accounts: add one with `accounts login` or `accounts import`")
        return
    rows = [
        [
            str(v.id),
            v.phone_masked,
            _who(v),
            v.worker or "-",
            _status_text(v),
            v.desired_state,
            _check_text(v),
            v.detail[:60] or "",
        ]
        for v in views
    ]
    click.echo(table(["ID", "PHONE", "TELEGRAM", "WORKER", "STATUS", "DESIRED", "CHECK", "DETAIL"], rows))


@accounts.command("show")
@click.argument("account_id", type=ACCOUNT_ID)
@json_option
@pass_context
def show_account(context: Context, account_id: int, as_json: bool) -> None:
    """Show one account and its recent events."""
    view = context.plane().accounts.get_account(account_id)
    if as_json:
        emit_json(view.to_json())
        return
    lines = [
        ("Account", str(view.id)),
        ("Phone", view.phone_masked),
        (
            "Telegram",
            f"{_who(view)}"
            + (f" ({view.name})" if view.name and view.username else "")
            + (f", id {view.user_id}" if view.user_id else ""),
        ),
        ("Worker", view.worker or "-"),
        ("Status", _status_text(view) + (f" — {view.detail}" if view.detail else "")),
        ("Desired", view.desired_state),
        ("API ID", str(view.api_id)),
        ("Session", "stored (encrypted)" if view.has_session else "none: log in"),
        ("2FA password", "on file" if view.has_password else "not on file"),
        ("Proxy", view.proxy or "none"),
        ("Device", view.device.describe() if view.device is not None else "-"),
        ("Check", _check_text(view) + (f" — {view.check_summary}" if view.check_summary else "")),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    if view.events:
        click.echo("\nRecent events:")
    for event in view.events:
        extra = f" — {event.detail}" if event.detail else ""
        when = event.latest.strftime("%Y-%m-%d %H:%M:%S UTC")  # the order of the lines: the last time
        say(f"  {when}  {event.kind}{extra}{event.repeats}  [{event.actor}]")


def wait_and_report(context: Context, account_id: int, timeout: float, run: str = "") -> None:
    """Wait for the outcome of the worker's runner `run` (the one this command started), then say it."""
    from celery_app.account_state import AccountStatus

    def settled(state: AccountState) -> bool:
        return (not run or state.run == run) and state.status != AccountStatus.STARTING

    state = context.plane().accounts.wait_for_status(account_id, settled, timeout)
    if state is None or not settled(state):
        click.echo(
            f"account {account_id} is still starting after {timeout:g} s; follow it with `accounts show {account_id}`"
        )
        return
    if state.status == AccountStatus.RUNNING:
        who = f"@{state.username}" if state.username else (state.name or "")
        say(f"account {account_id} is running" + (f" as {who}" if who else ""))
        return
    raise click.ClickException(
        f"account {account_id} is {state.status}" + (f": {state.detail}" if state.detail else "")
    )


@accounts.command("start")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--when-back", is_flag=True, help="If the worker is offline, start the account when it is back.")
@click.option("--wait/--no-wait", default=True, help="Wait for the outcome (default) or return at once.")
@click.option("--timeout", type=SECONDS, default=30.0, show_default=True, help="Seconds to wait for the outcome.")
@pass_context
def start_account(context: Context, account_id: int, when_back: bool, wait: bool, timeout: float) -> None:
    """Start an account on its worker."""
    result = context.plane().accounts.start(account_id, actor(), when_back=when_back)
    click.echo(result.message)
    if result.dispatched and wait:
        wait_and_report(context, account_id, timeout, result.run)


@accounts.command("stop")
@click.argument("account_id", type=ACCOUNT_ID)
@pass_context
def stop_account(context: Context, account_id: int) -> None:
    """Stop an account."""
    click.echo(context.plane().accounts.stop(account_id, actor()).message)


@accounts.command("restart")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--wait/--no-wait", default=True)
@click.option("--timeout", type=SECONDS, default=30.0, show_default=True, help="Seconds to wait for the outcome.")
@pass_context
def restart_account(context: Context, account_id: int, wait: bool, timeout: float) -> None:
    """Restart an account on its worker."""
    result = context.plane().accounts.restart(account_id, actor())
    click.echo(result.message)
    if wait:
        wait_and_report(context, account_id, timeout, result.run)


@accounts.command("move")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--to", "to_worker", required=True, help="The worker to move the account to.")
@pass_context
def move_account(context: Context, account_id: int, to_worker: str) -> None:
    """Move an account to another worker (stopped there first, never running twice)."""
    click.echo(context.plane().accounts.move(account_id, to_worker, actor()).message)


@accounts.command("remove")
@click.argument("account_id", type=ACCOUNT_ID)
@yes_option
@pass_context
def remove_account(context: Context, account_id: int, yes: bool) -> None:
    """Stop an account, delete it and wipe its secrets (asks first: it cannot be undone)."""
    service = context.plane().accounts
    view = service.get_account(account_id, event_limit=0)
    confirm_or_refuse(
        yes, f"Remove account {account_id} ({view.phone_masked}) and wipe its session? This cannot be undone."
    )
    click.echo(service.remove(account_id, actor()).message)


def _usable(context: Context, worker: str) -> bool:
    """Whether the worker takes starts now (active and online): else `start-all` is refused, nothing to ask."""
    view = context.plane().fleet.get_worker(worker, event_limit=0).worker
    return view.is_active and view.status.value == "online"


@accounts.command("start-all")
@click.option("--worker", required=True)
@click.option("--when-back", is_flag=True)
@yes_option
@pass_context
def start_all(context: Context, worker: str, when_back: bool, yes: bool) -> None:
    """Start every account of a worker (asks first, naming how many)."""
    from database.models import DesiredState

    views = context.plane().accounts.list_accounts(worker=worker)
    startable = sum(1 for view in views if view.has_session)
    usable = bool(startable) and _usable(context, worker)
    if startable and (usable or when_back):
        without = len(views) - startable
        skipped = f" ({counted(without, 'account')} without a session stay as they are)" if without else ""
        later = "" if usable else " when it is back"
        confirm_or_refuse(yes, f"Start {counted(startable, 'account')} on {worker}{later}?{skipped}")
    for result in context.plane().accounts.bulk(worker, DesiredState.RUNNING, actor(), when_back=when_back):
        click.echo(result.message)


@accounts.command("stop-all")
@click.option("--worker", required=True)
@yes_option
@pass_context
def stop_all(context: Context, worker: str, yes: bool) -> None:
    """Stop every account of a worker (asks first, naming how many)."""
    from database.models import DesiredState

    views = context.plane().accounts.list_accounts(worker=worker)
    if views:
        confirm_or_refuse(yes, f"Stop {counted(len(views), 'account')} on {worker}?")
    for result in context.plane().accounts.bulk(worker, DesiredState.STOPPED, actor()):
        click.echo(result.message)
