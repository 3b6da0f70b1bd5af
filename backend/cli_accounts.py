"""`run_cli.py accounts …`: thin commands over the accounts service. Phones are masked; secrets never printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from backend.cli import (
    ACCOUNT_ID,
    SECONDS,
    Context,
    actor,
    emit_json,
    json_option,
    pass_context,
    progress_bar,
    say,
    table,
)
from celery_app.account_state import UNKNOWN, AccountState, AccountStatus
from common.sessions import MAX_SIDECAR_BYTES, read_small_file
from common.validation import InvalidValue, is_ascii_number, printable

MAX_SESSION_STRING = 64 * 1024  # a StringSession is about 350 characters

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


def _service(context: Context) -> Any:
    return context.plane().accounts


def _who(view: Any) -> str:
    if view.username:
        return f"@{view.username}"
    return view.name or "-"


def _status_text(view: Any) -> str:
    text = f"{STATUS_ICONS.get(view.status, '')} {view.status}".strip()
    if view.status == "flood_wait" and view.flood_wait_until is not None:
        text += f" until {view.flood_wait_until.strftime('%H:%M:%S UTC')}"
    return text


@click.group("accounts")
def accounts() -> None:
    """Telegram accounts: log in, import, start, stop, move, remove."""


@accounts.command("list")
@click.option("--worker", help="Only this worker's accounts.")
@click.option(
    "--status",
    type=click.Choice([*(s.value for s in AccountStatus), UNKNOWN]),
    help="Only accounts in this status (`unknown`: no live report).",
)
@json_option
@pass_context
def list_accounts(context: Context, worker: str | None, status: str | None, as_json: bool) -> None:
    """List accounts with their live status."""
    views = _service(context).list_accounts(worker=worker, status=status)
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


VERDICT_ICONS = {"ok": "✅", "limited": "⚠️", "restricted": "⛔", "unauthorized": "🚫", "banned": "⛔"}


def _check_text(view: Any) -> str:
    """The last check's verdict and how long ago, or "-" if never checked."""
    if not view.check_verdict or view.checked_at is None:
        return "-"
    from datetime import UTC, datetime

    from backend.cli import ago

    age = ago((datetime.now(UTC) - view.checked_at).total_seconds())
    return f"{VERDICT_ICONS.get(view.check_verdict, '')} {view.check_verdict} ({age})".strip()


@accounts.command("show")
@click.argument("account_id", type=ACCOUNT_ID)
@json_option
@pass_context
def show_account(context: Context, account_id: int, as_json: bool) -> None:
    """Show one account and its recent events."""
    view = _service(context).get_account(account_id)
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
        when = event.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        say(f"  {when}  {event.kind}{extra}{event.repeats}  [{event.actor}]")


def _wait_and_report(context: Context, account_id: int, timeout: float, run: str = "") -> None:
    """Wait for the outcome of the worker's runner `run` (the one this command started), then say it."""
    service = _service(context)

    def settled(state: AccountState) -> bool:
        return (not run or state.run == run) and state.status != AccountStatus.STARTING

    state = service.wait_for_status(account_id, settled, timeout)
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
    result = _service(context).start(account_id, actor(), when_back=when_back)
    click.echo(result.message)
    if result.dispatched and wait:
        _wait_and_report(context, account_id, timeout, result.run)


@accounts.command("stop")
@click.argument("account_id", type=ACCOUNT_ID)
@pass_context
def stop_account(context: Context, account_id: int) -> None:
    """Stop an account."""
    click.echo(_service(context).stop(account_id, actor()).message)


@accounts.command("restart")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--wait/--no-wait", default=True)
@click.option("--timeout", type=SECONDS, default=30.0, show_default=True, help="Seconds to wait for the outcome.")
@pass_context
def restart_account(context: Context, account_id: int, wait: bool, timeout: float) -> None:
    """Restart an account on its worker."""
    result = _service(context).restart(account_id, actor())
    click.echo(result.message)
    if wait:
        _wait_and_report(context, account_id, timeout, result.run)


@accounts.command("move")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--to", "to_worker", required=True, help="The worker to move the account to.")
@pass_context
def move_account(context: Context, account_id: int, to_worker: str) -> None:
    """Move an account to another worker (stopped there first, never running twice)."""
    click.echo(_service(context).move(account_id, to_worker, actor()).message)


@accounts.command("remove")
@click.argument("account_id", type=ACCOUNT_ID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def remove_account(context: Context, account_id: int, yes: bool) -> None:
    """Stop an account, delete it and wipe its secrets."""
    service = _service(context)
    view = service.get_account(account_id)
    if not yes:
        click.confirm(f"remove account {account_id} ({view.phone_masked}) and wipe its session?", abort=True, err=True)
    click.echo(service.remove(account_id, actor()).message)


@accounts.command("start-all")
@click.option("--worker", required=True)
@click.option("--when-back", is_flag=True)
@pass_context
def start_all(context: Context, worker: str, when_back: bool) -> None:
    """Start every account of a worker."""
    from database.models import DesiredState

    for result in _service(context).bulk(worker, DesiredState.RUNNING, actor(), when_back=when_back):
        click.echo(result.message)


@accounts.command("stop-all")
@click.option("--worker", required=True)
@pass_context
def stop_all(context: Context, worker: str) -> None:
    """Stop every account of a worker."""
    from database.models import DesiredState

    for result in _service(context).bulk(worker, DesiredState.STOPPED, actor()):
        click.echo(result.message)


def _sidecar(session_file: Path) -> dict[str, Any]:
    """The `.json` next to a `.session` file (the common export format), `{}` if there is none."""
    path = session_file.with_suffix(".json")
    if not path.exists():
        return {}
    try:
        data = json.loads(read_small_file(path, MAX_SIDECAR_BYTES))
    except InvalidValue as error:
        raise InvalidValue(f"its {path.name} {error}") from None
    except ValueError:
        raise InvalidValue(f"its {path.name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidValue(f"its {path.name} is not a JSON object")
    return data


def _read_session_file(path: Path) -> bytes:
    try:
        return read_small_file(path)
    except InvalidValue as error:
        raise click.ClickException(f"{printable(str(path))} {error}") from None


@accounts.command("import")
@click.option("--worker", required=True, help="The worker that will run the account(s).")
@click.option("--session-string", help="A Telethon StringSession ('-' reads it from standard input).")
@click.option(
    "--session-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A Telethon .session file."
)
@click.option(
    "--folder", type=click.Path(exists=True, file_okay=False, path_type=Path), help="A folder of .session files."
)
@click.option("--api-id", help="API ID from my.telegram.org (a folder's .json sidecars may give it per file).")
@click.option("--api-hash", help="API hash from my.telegram.org.")
@click.option("--phone", help="The account's phone number (for a folder: from each file name or sidecar).")
@click.option("--proxy", help="socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port")
@click.option("--start", "start_now", is_flag=True, help="Start the imported account(s) right away.")
@pass_context
def import_accounts(
    context: Context,
    worker: str,
    session_string: str | None,
    session_file: Path | None,
    folder: Path | None,
    api_id: str | None,
    api_hash: str | None,
    phone: str | None,
    proxy: str | None,
    start_now: bool,
) -> None:
    """Import existing sessions (nothing is sent to Telegram)."""
    from backend.accounts_service import AccountError

    sources = [s for s in (session_string, session_file, folder) if s is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --session-string, --session-file or --folder")
    service = _service(context)
    if folder is None:
        if api_id is None or api_hash is None:
            raise click.UsageError("--api-id and --api-hash are required")
        if session_string == "-":
            session_string = sys.stdin.readline(MAX_SESSION_STRING).strip()
        from common.devices import identity_fields

        device = None
        if session_file is not None:  # a sidecar beside it says which device the session was used from
            try:
                device = identity_fields(_sidecar(session_file)) or None
            except InvalidValue as error:
                raise click.ClickException(f"{printable(session_file.name)}: {error}") from None
        view = service.import_session(
            worker,
            api_id,
            api_hash,
            session_string=session_string,
            session_file=_read_session_file(session_file) if session_file else None,
            phone=phone,
            proxy=proxy,
            device=device,
            actor=actor(),
        )
        click.echo(f"imported account {view.id} ({view.phone_masked}) on {view.worker}")
        _check_on_worker(service, view.id)
        if start_now:
            click.echo(service.start(view.id, actor()).message)
        return
    files = sorted(folder.glob("*.session"))
    if not files:
        raise click.ClickException(f"no .session files in {folder}")
    imported, failures = [], []
    with progress_bar("importing", len(files)) as advance:
        for path in files:
            try:
                imported.append(_import_one(service, path, worker, api_id, api_hash, proxy, start_now))
            except (AccountError, InvalidValue) as error:
                failures.append((path.name, str(error)))
            advance()
    click.echo(f"imported {len(imported)} of {len(files)} session file(s) onto {worker}")
    for name, reason in failures:
        say(f"  skipped {name}: {reason}")
    if failures:
        sys.exit(1)


def _import_one(
    service: Any, path: Path, worker: str, api_id: str | None, api_hash: str | None, proxy: str | None, start: bool
) -> int:
    """Import one file of a folder; AccountError or InvalidValue say why it was skipped."""
    from backend.accounts_service import AccountError
    from common.devices import identity_fields

    content = read_small_file(path)
    side = _sidecar(path)
    file_phone = str(side.get("phone") or (path.stem if is_ascii_number(path.stem.lstrip("+")) else ""))
    try:
        view = service.import_session(
            worker,
            side.get("app_id") or side.get("api_id") or api_id or "",
            str(side.get("app_hash") or side.get("api_hash") or api_hash or ""),
            session_file=content,
            phone=file_phone or None,
            proxy=proxy,
            device=identity_fields(side) or None,  # the device the session was used from; else one is chosen
            actor=actor(),
        )
    except AccountError as error:
        if error.code == "phone" and not file_phone:
            raise AccountError(
                f'no phone: name the file after it (79991234567.session) or add {path.stem}.json with "phone"', "phone"
            ) from None
        raise
    if start:
        service.start(view.id, actor())
    return view.id


def _check_on_worker(service: Any, account_id: int) -> None:
    """Ask the worker whether it can read the session (same SECRET_KEY); a warning, not a failure."""
    from backend.accounts_service import AccountError, WorkerUnavailable
    from backend.dispatch import WorkerDidNotAnswer

    try:
        service.check_session_on_worker(account_id)
        click.echo("the worker can read the session")
    except WorkerUnavailable:
        click.echo("(the worker is not online: the session will be checked when it starts)")
    except (AccountError, WorkerDidNotAnswer) as error:
        click.echo(f"warning: {error}", err=True)


@accounts.command("login")
@click.option("--worker", required=True, help="The worker that will run the account.")
@click.option("--phone", required=True, help="The account's phone number, e.g. +79991234567.")
@click.option("--api-id", required=True)
@click.option("--api-hash", required=True)
@click.option("--proxy", help="socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port")
@click.option("--start", "start_now", is_flag=True, help="Start the account once logged in.")
@pass_context
def login(
    context: Context, worker: str, phone: str, api_id: str, api_hash: str, proxy: str | None, start_now: bool
) -> None:
    """Log an account in: asks for the code (and the 2FA password) in the terminal."""
    from backend.accounts_service import LoginError

    service = _service(context)
    step = service.begin_login(worker, phone, api_id, api_hash, proxy=proxy, actor=actor())
    click.echo(f"Telegram sent a login code to the account's app or by SMS ({step.login_id[:8]}).")
    click.echo("Type it with spaces, like 1 2 3 4 5: Telegram voids a code that is sent on as is.")
    try:
        while step.state != "authorized":
            try:
                if step.state == "password_needed":
                    step = service.submit_password(
                        step.login_id, click.prompt("2FA password", hide_input=True, err=True)
                    )
                else:
                    step = service.submit_code(step.login_id, click.prompt("Code", err=True))
            except LoginError as error:
                if not error.retry:
                    raise click.ClickException(str(error)) from None
                click.echo(f"{error}", err=True)
    except click.Abort:
        service.cancel_login(step.login_id)
        raise
    assert step.account is not None
    who = f"@{step.account.username}" if step.account.username else (step.account.name or "")
    say(f"logged in: account {step.account.id} ({step.account.phone_masked}) {who} on {step.account.worker}")
    if start_now:
        started = service.start(step.account.id, actor())
        click.echo(started.message)
        _wait_and_report(context, step.account.id, 30.0, started.run)


from backend.cli_operations import list_operations, operate  # noqa: E402 - they build on the helpers above

accounts.add_command(operate)
accounts.add_command(list_operations)
