"""`run_cli.py plugins …`: the operator's code in accounts — list what exists, enable with a configuration,
disable, and see how each fares where it runs. Thin commands over `backend.plugins_service`.

A value the plugin declares secret (`SECRET_CONFIG`) can be in the configuration file, or be asked for without
echo (`--secret KEY`; `--secrets-from-stdin` reads them from standard input instead, one line each); it is
never an argument, and shown only as `***` (`***` given back keeps the stored value)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from backend.cli.base import (
    Context,
    actor,
    confirm_or_refuse,
    counted,
    emit_json,
    json_option,
    pass_context,
    say,
    table,
    yes_option,
)

MAX_SECRET_LINE = 16 * 1024
STATE_ICONS = {"running": "🟢", "failing": "⚠️", "blocked": "🐢", "error": "❌", "not running": "⚪"}


def _running_accounts(context: Context, worker: str | None) -> set[int]:
    return {v.id for v in context.plane().accounts.list_accounts(worker=worker) if v.status == "running" and v.live}


@click.group("plugins")
def plugins() -> None:
    """Plugins: the operator's own code running in accounts."""


@plugins.command("list")
@json_option
@pass_context
def list_plugins(context: Context, as_json: bool) -> None:
    """The plugins found here (the `fleet.plugins` entry points, PLUGINS_DIR, the shipped ones)."""
    catalogue = context.plane().plugins.catalogue()
    if as_json:
        emit_json(
            [
                {
                    "name": info.name,
                    "description": info.description,
                    "source": info.source,
                    "schema": info.schema,
                    "secret_config": sorted(info.secret_keys),
                    "error": info.error,
                }
                for info in sorted(catalogue.values(), key=lambda i: i.name)
            ]
        )
        return
    if not catalogue:
        click.echo("no plugins found: put one in PLUGINS_DIR (see README, Writing a plugin)")
        return
    rows = [
        [info.name, info.source, f"❌ {info.error}" if info.error else info.description]
        for info in sorted(catalogue.values(), key=lambda i: i.name)
    ]
    click.echo(table(["NAME", "SOURCE", "DESCRIPTION"], rows))


def _read_config(path: Path | None) -> dict[str, Any]:
    from backend.plugins_service import MAX_CONFIG_BYTES, parse_config

    if path is None:
        return {}
    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="--config")
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="--config") from None
    return parse_config(text)


def _read_secrets(keys: tuple[str, ...], declared: frozenset[str], plugin: str, from_stdin: bool) -> dict[str, str]:
    """The values of `--secret KEY`s: asked for without echo, or read from standard input one line each."""
    unknown = [key for key in keys if key not in declared]
    if unknown:
        listed = ", ".join(sorted(declared)) or "none"
        raise click.BadParameter(
            f"plugin {plugin} declares no secret {unknown[0]!r} (its secret keys: {listed})", param_hint="--secret"
        )
    if len(set(keys)) != len(keys):
        raise click.BadParameter("each secret key once", param_hint="--secret")
    if keys and not from_stdin and not sys.stdin.isatty():
        raise click.UsageError(
            "no terminal to ask for the secret values on: pipe them in with --secrets-from-stdin, one line each"
        )
    values: dict[str, str] = {}
    for key in keys:
        if from_stdin:
            value = sys.stdin.readline(MAX_SECRET_LINE).rstrip("\r\n")
        else:
            value = str(click.prompt(f"{key} for plugin {plugin} (not shown)", hide_input=True, err=True))
        if not value:
            raise click.BadParameter(f"the value of {key!r} is empty: nothing changed", param_hint="--secret")
        values[key] = value
    return values


def _targets(account_ids: tuple[int, ...], worker: str | None) -> None:
    if not account_ids and not worker:
        raise click.UsageError("give account IDs or --worker NAME")


def _confirm_many(yes: bool, count: int, worker: str | None, doing: str) -> None:
    """More than one account, or a worker's (whose reach the one typing it may not know): ask, naming how many."""
    if count > 1 or (worker and count):
        where = f" on {worker}" if worker else ""
        confirm_or_refuse(yes, f"{doing} for {counted(count, 'account')}{where}?")


@plugins.command("enable")
@click.argument("name")
@click.argument("account_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--worker", help="Every account of this worker.")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="A JSON file with the plugin's configuration."
)
@click.option(
    "--secret",
    "secret_keys",
    multiple=True,
    metavar="KEY",
    help="A secret key of the plugin whose value is asked for without echo (repeatable).",
)
@click.option("--secrets-from-stdin", is_flag=True, help="Read the --secret values from standard input, one a line.")
@yes_option
@pass_context
def enable(
    context: Context,
    name: str,
    account_ids: tuple[int, ...],
    worker: str | None,
    config_path: Path | None,
    secret_keys: tuple[str, ...],
    secrets_from_stdin: bool,
    yes: bool,
) -> None:
    """Enable (or reconfigure) a plugin for accounts; running accounts pick it up without a restart. For more
    than one account, or a worker's, asks first. Secret values (the plugin's SECRET_CONFIG) are kept encrypted,
    reach only the worker that runs the account, and show as ***; *** given for one keeps the stored value."""
    _targets(account_ids, worker)
    if secrets_from_stdin and not secret_keys:
        raise click.UsageError("--secrets-from-stdin reads the values of --secret KEY: name the keys")
    config = _read_config(config_path)
    if secret_keys:
        declared = context.plane().plugins.plugin(name).secret_keys
        config.update(_read_secrets(secret_keys, declared, name, secrets_from_stdin))
    count = len(set(account_ids))
    if worker:
        on_worker = {view.id for view in context.plane().accounts.list_accounts(worker=worker)}
        count = len(on_worker & set(account_ids)) if account_ids else len(on_worker)
    _confirm_many(yes, count, worker, f"Enable plugin {name}")
    ids = context.plane().plugins.enable(name, account_ids, config, actor(), worker=worker)
    say(f"plugin {name} enabled for {len(ids)} account(s): {', '.join(map(str, ids))}")


@plugins.command("disable")
@click.argument("name")
@click.argument("account_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--worker", help="Every account of this worker.")
@yes_option
@pass_context
def disable(context: Context, name: str, account_ids: tuple[int, ...], worker: str | None, yes: bool) -> None:
    """Disable a plugin for accounts; it unloads from running accounts without a restart. For more than one
    account, or a worker's, asks first."""
    _targets(account_ids, worker)
    enabled = context.plane().plugins.status(account_ids, worker, name, running=set())
    _confirm_many(yes, len({row.account_id for row in enabled}), worker, f"Disable plugin {name}")
    ids = context.plane().plugins.disable(name, account_ids, actor(), worker=worker)
    if not ids:
        say(f"plugin {name} was not enabled for those accounts: nothing changed")
        return
    say(f"plugin {name} disabled for {len(ids)} account(s): {', '.join(map(str, ids))}")


@plugins.command("status")
@click.argument("account_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--worker", help="Only this worker's accounts.")
@click.option("--plugin", "plugin", help="Only this plugin.")
@json_option
@pass_context
def status(
    context: Context, account_ids: tuple[int, ...], worker: str | None, plugin: str | None, as_json: bool
) -> None:
    """Enabled plugins per account, and how each fares where the account runs (errors, last error)."""
    rows = context.plane().plugins.status(account_ids, worker, plugin, running=_running_accounts(context, worker))
    if as_json:
        emit_json([row.to_json() for row in rows])
        return
    if not rows:
        click.echo("no plugins enabled: enable one with `plugins enable NAME ID… --config FILE`")
        return
    lines = [
        [
            str(row.account_id),
            row.phone_masked,
            row.plugin,
            f"{STATE_ICONS.get(row.state, '')} {row.state}".strip(),
            str(row.live.errors) if row.live else "-",
            (row.live.last_error if row.live else "")[:80],
        ]
        for row in rows
    ]
    click.echo(table(["ID", "PHONE", "PLUGIN", "STATE", "ERRORS", "LAST ERROR"], lines))
