"""`run_cli.py accounts import`: existing sessions into the fleet, in any common format (`common.session_formats`:
Telethon or Pyrogram string or `.session` file, Telegram Desktop tdata), detected or forced with `--format` —
one from a string, a file or a tdata folder, or a folder or `.zip` of them mixed with their `.json` sidecars
(`backend.session_sources`), imported by `importing`. Validated here and never sent to Telegram; nothing secret
is printed.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from backend.cli.base import Context, pass_context, progress_bar, say, table

if TYPE_CHECKING:
    from backend.accounts_service import AccountService
    from backend.cli.importing import Options
    from backend.session_sources import Source

MAX_SESSION_STRING = 64 * 1024  # a StringSession is about 350 characters
MAX_PASSCODE = 1024
FORMATS = ("telethon-string", "telethon-file", "pyrogram-string", "pyrogram-file", "tdata")  # SessionFormat's values


@click.command("import")
@click.option("--worker", required=True, help="The worker that will run the account(s).")
@click.option("--session-string", help="A Telethon or Pyrogram string session ('-' reads it from standard input).")
@click.option(
    "--session-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Telethon or Pyrogram .session file, or a text file of string sessions.",
)
@click.option(
    "--tdata",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Telegram Desktop tdata folder (or the folder holding it): each account in it.",
)
@click.option(
    "--folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of sessions in any format (.session, .txt, tdata folders, .zip archives).",
)
@click.option(
    "--zip", "archive", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A .zip of the same."
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Force this format instead of detecting it.")
@click.option("--passcode-from-stdin", is_flag=True, help="Read the tdata local passcode from standard input.")
@click.option(
    "--api-id", help="API ID from my.telegram.org; alone, that app of the pool (a sidecar or the session may give it)."
)
@click.option("--api-hash", help="Its API hash. With neither, each account gets an app of the pool (`apps list`).")
@click.option("--phone", help="The account's phone number (for a folder: from each file name or sidecar).")
@click.option("--proxy", help="socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port")
@click.option("--start", "start_now", is_flag=True, help="Start the imported account(s) right away.")
@pass_context
def import_accounts(
    context: Context,
    worker: str,
    session_string: str | None,
    session_file: Path | None,
    tdata: Path | None,
    folder: Path | None,
    archive: Path | None,
    fmt: str | None,
    passcode_from_stdin: bool,
    api_id: str | None,
    api_hash: str | None,
    phone: str | None,
    proxy: str | None,
    start_now: bool,
) -> None:
    """Import existing sessions (nothing is sent to Telegram)."""
    from backend.cli.importing import Options

    given = [s for s in (session_string, session_file, tdata, folder, archive) if s is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --session-string, --session-file, --tdata, --folder or --zip")
    if api_hash is not None and api_id is None:
        raise click.UsageError("--api-hash needs --api-id")
    if passcode_from_stdin and session_string == "-":
        raise click.UsageError("--session-string - and --passcode-from-stdin cannot both read standard input")
    batch = folder is not None or archive is not None
    if batch and phone:
        raise click.UsageError("--phone names one account: in a folder, name each file after its phone or use sidecars")
    passcode = _stdin_line(MAX_PASSCODE).rstrip("\r\n") if passcode_from_stdin else None
    options = Options(worker, api_id, api_hash, phone, proxy, start_now, fmt, passcode or None, batch)
    if batch:
        _import_many(context, folder, archive, options)
    else:
        _import_one(context, _single_source(session_string, session_file, tdata), options)


def _stdin_line(limit: int) -> str:
    return sys.stdin.readline(limit)


def _single_source(session_string: str | None, session_file: Path | None, tdata: Path | None) -> Source:
    from backend.session_sources import Source, file_source, tdata_source

    if session_string is not None:
        text = _stdin_line(MAX_SESSION_STRING).strip() if session_string == "-" else session_string
        return Source("the session string", text=text)
    if tdata is not None:
        return tdata_source(tdata)
    assert session_file is not None
    return file_source(session_file)


def _import_one(context: Context, source: Source, options: Options) -> None:
    """One string, file or tdata: one account as before, or a result table if it holds several."""
    from dataclasses import replace

    from backend.cli.importing import import_session, read_source
    from backend.session_sources import account_fields, load_sidecar
    from common.session_formats import PasscodeRequired
    from common.validation import InvalidValue, printable

    where = "" if source.text is not None else f"{printable(source.name)}: "
    try:
        try:
            sessions = read_source(source, options)
        except PasscodeRequired:
            if options.passcode or not sys.stdin.isatty():
                raise
            passcode = click.prompt(f"local passcode of {printable(source.name)}", hide_input=True, err=True)
            options = replace(options, passcode=passcode)
            sessions = read_source(source, options)
        sidecar = load_sidecar(source.sidecar)
    except PasscodeRequired as error:
        hint = "" if options.passcode else " with --passcode-from-stdin (or run in a terminal to be asked)"
        raise click.ClickException(f"{where}{error}{hint}") from None
    except InvalidValue as error:
        raise click.ClickException(f"{where}{error}") from None
    if len(sessions) > 1:
        _report(context, [source], replace(options, batch=True))
        return
    item = sessions[0]
    fields = account_fields(sidecar, item, 1)
    service = context.plane().accounts
    try:
        view = import_session(service, source, item, fields, options, 1)
    except InvalidValue as error:
        raise click.ClickException(f"{where}{error}") from None
    click.echo(f"imported account {view.id} ({view.phone_masked}) on {view.worker}")
    _check_on_worker(service, view.id)
    if options.start:
        from backend.cli.base import actor

        click.echo(service.start(view.id, actor()).message)


def _import_many(context: Context, folder: Path | None, archive: Path | None, options: Options) -> None:
    from backend.session_sources import sources_in, unpacked
    from common.validation import InvalidValue, printable

    root = folder or archive
    assert root is not None
    with contextlib.ExitStack() as archives:
        try:
            if archive is not None:
                sources = sources_in(archives.enter_context(unpacked(archive)), archives, archive.name, True)
            else:
                sources = sources_in(root, archives)
        except InvalidValue as error:
            raise click.ClickException(f"{printable(root.name)} {error}") from None
        if not sources:
            raise click.ClickException(
                f"no sessions in {printable(str(root))} (.session and .txt files, tdata folders, .zip archives)"
            )
        _report(context, sources, options)


def _report(context: Context, sources: list[Source], options: Options) -> None:
    """Import each source with a progress bar, then the table, the count and each problem; exit 1 on any."""
    from backend.cli.importing import import_source

    service = context.plane().accounts
    rows = []
    with progress_bar("importing", len(sources)) as advance:
        for source in sources:
            rows.extend(import_source(service, source, options))
            advance()
    click.echo(table(["FILE", "ACCOUNT", "RESULT"], [[row.file, row.account, row.result] for row in rows]))
    imported = sum(row.account_id is not None for row in rows)
    click.echo(f"imported {imported} of {len(rows)} session file(s) onto {options.worker}")
    for row in rows:
        if row.reason:
            say(f"  {'not started' if row.account_id else 'skipped'} {row.file}: {row.reason}")
    if any(row.reason for row in rows):
        sys.exit(1)


def _check_on_worker(service: AccountService, account_id: int) -> None:
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
