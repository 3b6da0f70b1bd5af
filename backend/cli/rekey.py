"""`run_cli.py rekey`: re-encrypt every stored secret under SECRET_KEY's first key (`backend.rekey`), after
asking (naming how many accounts, apps and proxies; `--yes` for scripts); lists, without content, whatever no
key could read, and exits 1 if there was any."""

from __future__ import annotations

import sys

import click

from backend.cli.base import (
    Context,
    confirm_or_refuse,
    counted,
    emit_json,
    json_option,
    pass_context,
    recorded,
    yes_option,
)


@click.command("rekey")
@yes_option
@json_option
@pass_context
def rekey_command(context: Context, yes: bool, as_json: bool) -> None:
    """Re-encrypt every stored secret under SECRET_KEY's first key (rotation: SECRET_KEY=new,old)."""
    from backend.rekey import rekey

    plane = context.plane()
    box = plane.box
    if not box.rotating and not as_json:
        click.echo("SECRET_KEY lists one key: secrets are re-encrypted under it (nothing older to retire)", err=True)
    if not yes:
        accounts = plane.accounts.accounts_page(0, per_page=1).total
        secrets = f"{counted(accounts, 'account')}, {counted(len(plane.apps.list()), 'app')}, "
        secrets += f"{counted(len(plane.proxies.list_proxies()), 'proxy', 'proxies')}, the board's users"
        confirm_or_refuse(yes, f"Re-encrypt every stored secret ({secrets}) under the first key of SECRET_KEY?")
    with recorded(context, plane.engine, "secrets.rekey") as params:
        report = rekey(plane.sessions, plane.redis, box)
        params.update(report.to_json(), failed=len(report.failed))
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(
            f"re-encrypted {report.accounts} account(s), {report.apps} app(s), {report.board_users} board user(s), "
            f"{report.plugin_configs} plugin configuration(s) and "
            f"{report.redis_entries} Redis entr{'y' if report.redis_entries == 1 else 'ies'}"
        )
        for what in report.failed:
            click.echo(f"  not decryptable with any key in SECRET_KEY, left as is: {what}", err=True)
    if report.failed:
        sys.exit(1)
