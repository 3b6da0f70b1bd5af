"""`run_cli.py apps add | list | set | remove`: the pool of API apps that logins and imports without credentials of
their own draw from, over `backend.apps_service`. The API hash is asked for without echo (or read from standard
input with `--hash-from-stdin`), never taken as an argument and never printed."""

from __future__ import annotations

import sys

import click

from backend.cli.base import (
    Context,
    actor,
    confirm_or_refuse,
    emit_json,
    json_option,
    pass_context,
    say,
    table,
    yes_option,
)

MAX_HASH_LINE = 1024  # an API hash is 32 characters


def _read_hash(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline(MAX_HASH_LINE).strip()
    if not sys.stdin.isatty():
        raise click.UsageError(
            "no terminal to ask for the API hash on: pipe it in with --hash-from-stdin (it is never an argument)"
        )
    return str(click.prompt("API hash (not shown)", hide_input=True, err=True))


def _cap(max_accounts: int | None) -> str:
    return "no cap" if max_accounts is None else str(max_accounts)


@click.group("apps")
def apps() -> None:
    """The pool of API apps (api_id + hash from my.telegram.org) that accounts without their own are given."""


@apps.command("add")
@click.argument("api_id")
@click.option("--hash-from-stdin", is_flag=True, help="Read the API hash from standard input (else it is asked for).")
@click.option(
    "--max-accounts", type=click.IntRange(min=1), help="At most this many accounts on the app (no cap if unset)."
)
@click.option("--name", help="A name to tell the app by.")
@json_option
@pass_context
def add_app(
    context: Context, api_id: str, hash_from_stdin: bool, max_accounts: int | None, name: str | None, as_json: bool
) -> None:
    """Put an API app into the pool."""
    api_hash = _read_hash(hash_from_stdin)
    view = context.plane().apps.add(api_id, api_hash, name=name, max_accounts=max_accounts, actor=actor())
    if as_json:
        emit_json(view.to_json())
        return
    label = f" ({view.name})" if view.name else ""
    cap = "no cap" if view.max_accounts is None else f"at most {view.max_accounts} account(s)"
    say(f"app {view.id} added: API ID {view.api_id}{label}, {cap}")


@apps.command("list")
@json_option
@pass_context
def list_apps(context: Context, as_json: bool) -> None:
    """The pool's apps with the accounts each carries (the hashes are never shown)."""
    views = context.plane().apps.list()
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("the pool is empty: add an app with `run_cli.py apps add API_ID`")
        return
    rows = [
        [
            str(v.id),
            str(v.api_id),
            v.name or "-",
            str(v.accounts) + (f" (+{v.logins} logging in)" if v.logins else ""),
            _cap(v.max_accounts) + (" (full)" if v.full else ""),
        ]
        for v in views
    ]
    click.echo(table(["ID", "API ID", "NAME", "ACCOUNTS", "CAP"], rows))


@apps.command("set")
@click.argument("app_id", type=click.IntRange(min=1))
@click.option("--max-accounts", type=click.IntRange(min=1), help="A new cap (below its load: no new accounts).")
@click.option("--no-cap", is_flag=True, help="No cap at all.")
@click.option("--name", help="A new name.")
@json_option
@pass_context
def set_app(
    context: Context, app_id: int, max_accounts: int | None, no_cap: bool, name: str | None, as_json: bool
) -> None:
    """Change an app's cap or name."""
    if no_cap and max_accounts is not None:
        raise click.UsageError("give --max-accounts or --no-cap, not both")
    if not no_cap and max_accounts is None and name is None:
        raise click.UsageError("nothing to change: give --max-accounts, --no-cap or --name")
    view = context.plane().apps.change(app_id, name=name, max_accounts=max_accounts, no_cap=no_cap, actor=actor())
    if as_json:
        emit_json(view.to_json())
        return
    cap = "no cap" if view.max_accounts is None else f"cap {view.max_accounts}"
    say(f"app {view.id} (API ID {view.api_id}{f', {view.name}' if view.name else ''}): {cap}, carries {view.accounts}")


@apps.command("remove")
@click.argument("app_id", type=click.IntRange(min=1))
@yes_option
@pass_context
def remove_app(context: Context, app_id: int, yes: bool) -> None:
    """Take an app out of the pool (refused while accounts use it); asks first."""
    service = context.plane().apps
    found = next((v for v in service.list() if v.id == app_id), None)
    if found is not None and not found.accounts and not found.logins:  # else the service says why not
        label = f", {found.name}" if found.name else ""
        confirm_or_refuse(
            yes, f"Remove app {found.id} (API ID {found.api_id}{label}) from the pool? Its hash is deleted."
        )
    view = service.remove(app_id, actor())
    click.echo(f"app {view.id} (API ID {view.api_id}) removed")
