"""`run_cli.py accounts import`: existing sessions into the fleet — one from a string or a file, or a folder of
`.session` files with their `.json` sidecars — validated here and never sent to Telegram."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from backend.cli.base import Context, actor, pass_context, progress_bar, say

MAX_SESSION_STRING = 64 * 1024  # a StringSession is about 350 characters


def _sidecar(session_file: Path) -> dict[str, Any]:
    """The `.json` next to a `.session` file (the common export format), `{}` if there is none."""
    import json

    from common.sessions import MAX_SIDECAR_BYTES, read_small_file
    from common.validation import InvalidValue

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
    from common.sessions import read_small_file
    from common.validation import InvalidValue, printable

    try:
        return read_small_file(path)
    except InvalidValue as error:
        raise click.ClickException(f"{printable(str(path))} {error}") from None


@click.command("import")
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
    from backend.errors import AccountError
    from common.validation import InvalidValue, printable

    sources = [s for s in (session_string, session_file, folder) if s is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --session-string, --session-file or --folder")
    service = context.plane().accounts
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
    from backend.errors import AccountError
    from common.devices import identity_fields
    from common.sessions import read_small_file
    from common.validation import is_ascii_number

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
        if error.code == "phone_required" and not file_phone:
            raise AccountError(
                f'no phone: name the file after it (79991234567.session) or add {path.stem}.json with "phone"',
                "phone_not_found",
            ) from None
        raise
    if start:
        service.start(view.id, actor())
    return view.id


def _check_on_worker(service: Any, account_id: int) -> None:
    """Ask the worker whether it can read the session (same SECRET_KEY); a warning, not a failure."""
    from backend.dispatch import WorkerDidNotAnswer
    from backend.errors import AccountError, WorkerUnavailable

    try:
        service.check_session_on_worker(account_id)
        click.echo("the worker can read the session")
    except WorkerUnavailable:
        click.echo("(the worker is not online: the session will be checked when it starts)")
    except (AccountError, WorkerDidNotAnswer) as error:
        click.echo(f"warning: {error}", err=True)
