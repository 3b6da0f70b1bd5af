"""`run_cli.py backup --out FILE` and `run_cli.py restore FILE`: one encrypted archive of the whole database
(`backend.backup`). The archive's secret is a passphrase asked for on the terminal (twice when writing), the
first line of stdin (`--passphrase-from-stdin`, for scripts), or a key file (`--key-file`). Large tables show
a progress bar on stderr. A restore asks first, naming the rows it deletes and loads (`--yes` for scripts)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from backend.cli.base import (
    Context,
    confirm_or_refuse,
    emit_json,
    json_option,
    pass_context,
    recorded,
    say,
    yes_option,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from backend.backup_format import ArchiveSecret

F = TypeVar("F")
LARGE_TABLE = 10_000  # rows from which a table gets a progress bar


def secret_options(function: F) -> F:
    function = click.option(
        "--key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Use this file's bytes (at least 16; e.g. `head -c 32 /dev/urandom`) as the archive's key.",
    )(function)
    return click.option(
        "--passphrase-from-stdin", is_flag=True, help="Read the passphrase from the first line of stdin."
    )(function)


def _secret(from_stdin: bool, key_file: Path | None, confirm: bool) -> ArchiveSecret:
    from backend.backup_format import KeyFile, Passphrase

    if from_stdin and key_file:
        raise click.UsageError("--passphrase-from-stdin and --key-file exclude each other")
    if key_file is not None:
        return KeyFile.read(key_file)
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")  # sys.stdin: a confirmation may read the next line
        if not line:
            raise click.ClickException("no passphrase on stdin: its first line must be the passphrase")
        return Passphrase(line)
    if not sys.stdin.isatty():
        raise click.ClickException(
            "no terminal to ask for the passphrase on: use --passphrase-from-stdin or --key-file"
        )
    repeat = "Repeat the passphrase" if confirm else False
    return Passphrase(click.prompt("Passphrase", hide_input=True, confirmation_prompt=repeat, err=True))


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """An archive's refusal (wrong passphrase, damaged, not empty, …) as one line and exit 1."""
    from backend.backup_format import ArchiveError

    try:
        yield
    except ArchiveError as error:
        raise click.ClickException(str(error)) from None


def _engine(context: Context, must_exist: bool) -> Engine:
    from database.engine import create_db_engine

    context.enter_acting()
    engine = create_db_engine(context.settings.database_url)
    database = engine.url.database
    if must_exist and engine.dialect.name == "sqlite" and database and not Path(database).exists():
        raise click.ClickException(f"no database at {database}: nothing to back up")
    return engine


class _Bars:
    """`rich` bars on stderr for the tables large enough to wait for; called as a `backend.backup.Progress`."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, table: str, done: int, total: int) -> None:
        if total < LARGE_TABLE:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(stderr=True, highlight=False))
            self._progress.start()
        if table not in self._tasks:
            self._tasks[table] = self._progress.add_task(table, total=total)
        self._progress.update(self._tasks[table], completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@click.command("backup")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The archive to write.")
@secret_options
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@json_option
@pass_context
def backup_command(
    context: Context, out: Path, passphrase_from_stdin: bool, key_file: Path | None, force: bool, as_json: bool
) -> None:
    """Write every table of the database into one encrypted archive (mode 0600).

    The stored secrets stay encrypted under SECRET_KEY inside it: keep SECRET_KEY, apart from the archive,
    to restore."""
    from backend.backup import backup
    from config import load_secret_key

    secret_key = load_secret_key()
    if out.exists() and not force:
        raise click.ClickException(f"{out} exists: choose another name, or pass --force to replace it")
    engine = _engine(context, must_exist=True)
    secret = _secret(passphrase_from_stdin, key_file, confirm=True)
    bars = _Bars()
    with _refusals(), contextlib.closing(bars), recorded(context, engine, "database.backup") as params:
        params.update(file=str(out), force=force)
        summary = backup(engine, out, secret, secret_key, replace=force, progress=bars)
        params.update(rows=sum(summary.tables.values()), revision=summary.revision)
    engine.dispose()
    if as_json:
        emit_json(summary.to_json())
        return
    tables = summary.tables
    say(
        f"backup written to {summary.path}: {sum(tables.values())} rows in {len(tables)} tables, schema "
        f"{summary.revision}, {summary.size} bytes"
    )
    click.echo("restoring it needs this SECRET_KEY: keep the key safe, and apart from the archive", err=True)


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--merge",
    type=click.Choice(["skip-existing"]),
    help="Into a database with rows: keep every row whose key exists, add the archive's others.",
)
@click.option("--replace", is_flag=True, help="Into a database with rows: delete all of them, then load.")
@yes_option
@secret_options
@json_option
@pass_context
def restore_command(
    context: Context,
    file: Path,
    merge: str | None,
    replace: bool,
    yes: bool,
    passphrase_from_stdin: bool,
    key_file: Path | None,
    as_json: bool,
) -> None:
    """Rebuild the database from an archive written by `backup`.

    Into an empty database only, unless --merge skip-existing or --replace says how. The archive is checked
    whole first: a wrong passphrase or a damaged file changes nothing. Needs the SECRET_KEY the backup was
    taken under. Asks first, naming the rows it deletes and loads."""
    from backend.backup import RestoreMode, check_secret_key, inspect_archive, plan_schema, restore
    from backend.backup_schema import inspect_target
    from config import load_secret_key, mask_url

    if merge and replace:
        raise click.UsageError("--merge and --replace exclude each other")
    mode = RestoreMode.REPLACE if replace else RestoreMode.SKIP_EXISTING if merge else RestoreMode.EMPTY_ONLY
    secret_key = load_secret_key()
    secret = _secret(passphrase_from_stdin, key_file, confirm=False)
    bars = _Bars()
    with _refusals(), contextlib.closing(bars):
        info = inspect_archive(file, secret)
        notes = check_secret_key(info, secret_key)
        engine = _engine(context, must_exist=False)
        target = inspect_target(engine)
        plan_schema(info, target, mode)
        where = f"the database at {mask_url(context.settings.database_url)}"
        archive = f"the archive's {info.total} rows (taken {info.created_at})"
        if mode is RestoreMode.REPLACE and not target.empty:
            question = f"Delete the {target.total} rows of {where} and load {archive}?"
        elif mode is RestoreMode.SKIP_EXISTING and not target.empty:
            question = f"Add to {where} whichever of {archive} it lacks (its {target.total} rows stay)?"
        else:
            question = f"Load {archive} into {where}?"
        confirm_or_refuse(yes, question)
        with recorded(context, engine, "database.restore", on_error=False) as params:
            params.update(file=str(file), mode=mode.value, archive_rows=info.total, taken=str(info.created_at))
            summary = restore(engine, file, secret, info, mode, progress=bars)
    engine.dispose()
    if as_json:
        emit_json({"file": str(file), **summary.to_json(), "archive": info.to_json(), "notes": notes})
        return
    loaded, kept = sum(summary.loaded.values()), sum(summary.kept.values())
    say(
        f"restored {loaded} rows into {len(summary.loaded)} tables from {file} (taken {info.created_at} at "
        f"schema {info.revision})"
        + (f"; kept {kept} rows that were there" if kept else "")
        + (f"; deleted {summary.deleted} rows first" if summary.deleted else "")
        + (f"; schema upgraded to {summary.upgraded_to}" if summary.upgraded_to else "")
    )
    for note in notes:
        click.echo(f"note: {note}", err=True)
