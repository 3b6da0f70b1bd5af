"""`run_cli.py rekey`: re-encrypt every stored secret under SECRET_KEY's first key (`backend.rekey`), after
asking; lists, without content, whatever no key could read, and exits 1 if there was any."""

from __future__ import annotations

import sys

import click

from backend.cli.base import Context, emit_json, json_option, pass_context


@click.command("rekey")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
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
        click.confirm("re-encrypt every stored secret under the first key of SECRET_KEY?", abort=True, err=True)
    report = rekey(plane.sessions, plane.redis, box)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(
            f"re-encrypted {report.accounts} account(s), {report.apps} app(s), {report.board_users} board user(s) and "
            f"{report.redis_entries} Redis entr{'y' if report.redis_entries == 1 else 'ies'}"
        )
        for what in report.failed:
            click.echo(f"  not decryptable with any key in SECRET_KEY, left as is: {what}", err=True)
    if report.failed:
        sys.exit(1)
