"""`run_cli.py accounts op NAME …`: run an account operation on one account, a selection, a worker's or all,
with a progress bar while they run and a results table (or `--json`) at the end; `accounts ops` shows a batch's
or an account's operations. Thin commands over `backend.operations_service`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from backend.cli.base import (
    ACCOUNT_STATUS,
    SECONDS,
    Context,
    actor,
    ago,
    confirm_or_refuse,
    counted,
    emit_json,
    json_option,
    pass_context,
    progress_bar,
    say,
    table,
    yes_option,
)
from celery_app.operations import OperationName, OperationStatus

POLL_SECONDS = 0.5
STATUS_ICONS = {
    OperationStatus.QUEUED: "⏳",
    OperationStatus.RUNNING: "⏳",
    OperationStatus.FLOOD_WAIT: "🐢",
    OperationStatus.DONE: "✅",
    OperationStatus.FAILED: "❌",
    OperationStatus.WORKER_LOST: "❓",
}
# What an operation on many accounts does that its question should say (the others read or check).
CONSEQUENCES = {
    OperationName.TERMINATE_OTHERS: " Every other session of theirs ends: that cannot be undone.",
    OperationName.PROFILE: " Their profiles change.",
}


def _read_photo(path: Path) -> bytes:
    from celery_app.contract import PHOTO_MAX_BYTES

    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="--photo")
    with path.open("rb") as handle:
        data = handle.read(PHOTO_MAX_BYTES + 1)
    return data


@click.command("op")
@click.argument("name", metavar="NAME")
@click.argument("account_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--worker", help="Every account of this worker.")
@click.option("--all", "all_accounts", is_flag=True, help="Every account of the fleet.")
@click.option("--status", type=ACCOUNT_STATUS, help="Only accounts in this live status (with IDs, --worker or alone).")
@click.option("--first-name", help="profile: the first name.")
@click.option("--last-name", help='profile: the last name ("" clears it).')
@click.option("--bio", help='profile: the bio, up to 70 characters ("" clears it).')
@click.option("--username", help='profile: the username, without @ ("" removes it).')
@click.option("--photo", type=click.Path(path_type=Path), help="profile: a JPEG or PNG file for the profile photo.")
@click.option("--set-password", is_flag=True, help="2fa: set or change the cloud password (asked for, never shown).")
@click.option("--hint", help="2fa: a hint for the new password.")
@click.option("--wait/--no-wait", default=True, help="Follow the operations to their end (default).")
@click.option("--timeout", type=SECONDS, default=600.0, show_default=True, help="Seconds to follow them.")
@yes_option
@json_option
@pass_context
def operate(
    context: Context,
    name: str,
    account_ids: tuple[int, ...],
    worker: str | None,
    all_accounts: bool,
    status: str | None,
    first_name: str | None,
    last_name: str | None,
    bio: str | None,
    username: str | None,
    photo: Path | None,
    set_password: bool,
    hint: str | None,
    wait: bool,
    timeout: float,
    yes: bool,
    as_json: bool,
) -> None:
    """Run an operation on accounts: check, sessions, terminate-others, 2fa or profile.

    On more than one account, or on those --worker, --all or --status choose, it asks first, naming how many.

    \b
    Examples:
      run_cli.py accounts op check --all
      run_cli.py accounts op terminate-others 3 4 5
      run_cli.py accounts op profile 7 --first-name Anna --photo anna.jpg
      run_cli.py accounts op 2fa 7 --set-password
    """
    from backend.errors import AccountError

    service = context.plane().operations
    operation = service.operation_name(name)
    if sum(bool(x) for x in (account_ids, worker, all_accounts)) > 1:
        raise click.UsageError("choose accounts one way: IDs, --worker or --all")
    if not (account_ids or worker or all_accounts or status):
        raise click.UsageError("choose accounts: give IDs, --worker NAME, --status STATUS or --all")
    options: dict[str, Any] = {}
    if operation is OperationName.PROFILE:
        options = {"first_name": first_name, "last_name": last_name, "bio": bio, "username": username}
        if photo is not None:
            options["photo"] = _read_photo(photo)
    elif any(v is not None for v in (first_name, last_name, bio, username, photo)):
        raise click.UsageError("--first-name, --last-name, --bio, --username and --photo are for the profile operation")
    if operation is OperationName.TWO_FA:
        if set_password:
            options["current_password"] = click.prompt(
                "Current 2FA password (empty: none, or the one on file)",
                hide_input=True,
                default="",
                show_default=False,
                err=True,
            )
            options["new_password"] = click.prompt(
                "New 2FA password", hide_input=True, confirmation_prompt=True, err=True
            )
        options["hint"] = hint
    elif set_password or hint is not None:
        raise click.UsageError("--set-password and --hint are for the 2fa operation")
    service.build_params(operation, options)  # bad input: refused before any account is chosen
    chosen = service.select(account_ids, worker=worker, status=status)
    if not chosen:
        raise AccountError("no accounts match", "no_accounts")
    if len(chosen) > 1 or not account_ids:
        _confirm(yes, operation, len(chosen), bool(account_ids), worker, status, set_password)
    batch = service.submit(operation, chosen, options, actor())
    views = batch.operations
    if wait:
        views = _follow(service, batch.batch, views, timeout, show_progress=not as_json or sys.stderr.isatty())
    if as_json:
        emit_json({"batch": batch.batch, "operation": operation.value, "operations": [v.to_json() for v in views]})
    else:
        _print_results(views)
    unfinished = [v for v in views if not v.final]
    failed = [v for v in views if v.status in (OperationStatus.FAILED, OperationStatus.WORKER_LOST)]
    if unfinished and wait:
        say(
            f"{len(unfinished)} still running after {timeout:g} s; follow them with "
            f"`accounts ops --batch {batch.batch}`",
            err=True,
        )
    if failed:
        say(f"{len(failed)} of {len(views)} failed", err=True)
        click.get_current_context().exit(1)


def _confirm(
    yes: bool,
    operation: OperationName,
    count: int,
    by_ids: bool,
    worker: str | None,
    status: str | None,
    password: bool,
) -> None:
    """Many accounts, or a selection whose reach the one typing it may not know: ask, naming how many."""
    where = f" on {worker}" if worker else ("" if by_ids else " across the fleet")
    where += f" in status {status}" if status else ""
    said = CONSEQUENCES.get(operation, "")
    if operation is OperationName.TWO_FA and password:
        said = " Their 2FA password changes to the one given."
    confirm_or_refuse(yes, f"Run {operation.value} on {counted(count, 'account')}{where}?{said}")


def _follow(service: Any, batch: str, views: list[Any], timeout: float, show_progress: bool) -> list[Any]:
    deadline = time.monotonic() + timeout
    done = sum(1 for v in views if v.final)
    if not show_progress:
        while done < len(views) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            views = service.progress(batch)
            done = sum(1 for v in views if v.final)
        return views
    with progress_bar(f"{views[0].name if views else 'operation'}", len(views)) as advance:
        for _ in range(done):
            advance()
        while done < len(views) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            views = service.progress(batch)
            now_done = sum(1 for v in views if v.final)
            for _ in range(now_done - done):
                advance()
            done = now_done
    return views


def _print_results(views: list[Any]) -> None:
    rows = [
        [
            str(v.account_id),
            v.phone_masked,
            f"{STATUS_ICONS.get(OperationStatus(v.status), '')} {v.status}".strip(),
            v.worker or "-",
            v.summary[:100],
        ]
        for v in sorted(views, key=lambda v: v.account_id)
    ]
    click.echo(table(["ID", "PHONE", "STATUS", "WORKER", "RESULT"], rows))
    for view in sorted(views, key=lambda v: v.account_id):
        if view.name == OperationName.SESSIONS and view.status == OperationStatus.DONE:
            _print_sessions(view)


def _print_sessions(view: Any) -> None:
    """Every authorisation of one account: the fleet's own (marked) and the others, most recent first."""
    sessions = [s for s in view.result.get("sessions", []) if isinstance(s, dict)]
    if not sessions:
        return
    now = time.time()
    rows = [
        [
            "this (the fleet)" if item.get("current") else str(item.get("hash", "")),
            str(item.get("device") or "-"),
            " ".join(part for part in (str(item.get("platform") or ""), str(item.get("system") or "")) if part) or "-",
            str(item.get("app") or "-"),
            str(item.get("place") or "-"),
            ago(max(0.0, now - float(item["last_active"]))) if item.get("last_active") else "-",
        ]
        for item in sessions
    ]
    click.echo(f"\nAccount {view.account_id} ({view.phone_masked}): {len(sessions)} session(s)")
    click.echo(table(["SESSION", "DEVICE", "SYSTEM", "APP", "PLACE", "LAST ACTIVE"], rows))


@click.command("ops")
@click.option("--batch", help="The operations of one batch (as `accounts op` printed it).")
@click.option("--account", "account_id", type=click.IntRange(min=1), help="One account's latest operations.")
@json_option
@pass_context
def list_operations(context: Context, batch: str | None, account_id: int | None, as_json: bool) -> None:
    """Show operations: a batch's, or an account's latest."""
    service = context.plane().operations
    if bool(batch) == bool(account_id):
        raise click.UsageError("give --batch or --account")
    views = service.progress(batch) if batch else service.recent(account_id, limit=20)
    if as_json:
        emit_json([v.to_json() for v in views])
        return
    if not views:
        click.echo("no operations")
        return
    _print_results(views)
