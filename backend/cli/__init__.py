"""The operators' CLI (click): thin commands over the control plane's services, human tables or one JSON document.

Laid out as Celery's `celery/bin/`: `base` holds what every command shares, one module per command group holds
its commands, and this root only assembles them. The root names each command by where it lives and imports it
when it is used, and command modules import their services inside the commands, so `--version` and `--help`
import no SQLAlchemy, Redis or `rich`, and `list` only what listing workers needs.

Every change is recorded in the audit log (`audit`) as done by `cli:<OS user>` in the role `shell`, under the
name `--as NAME` gives (a script's), else the OS user's. Actions on many accounts, and those that cannot be
undone, ask first, naming how many (`--yes` for scripts; without a terminal they refuse without it).

Exit codes: 0 ok, 1 a domain error (unknown worker, refused action), 2 bad usage, 69 Redis or the database
unreachable, 70 an unexpected internal error, 78 bad configuration. Logs go to stderr; with `--json`, stdout
carries exactly one document.
"""

from __future__ import annotations

import os
import sys

import click

from backend.cli.base import Context, FleetGroup, check_as_name
from version import __version__

COMMANDS = {
    "list": "backend.cli.workers:list_workers",
    "show": "backend.cli.workers:show_worker",
    "activate": "backend.cli.workers:activate",
    "deactivate": "backend.cli.workers:deactivate",
    "add": "backend.cli.workers:add",
    "remove": "backend.cli.workers:remove",
    "doctor": "backend.cli.doctor:doctor",
    "rekey": "backend.cli.rekey:rekey_command",
    "accounts": "backend.cli.accounts:accounts",
    "board": "backend.cli.board:board",
    "plugins": "backend.cli.plugins:plugins",
    "proxies": "backend.cli.proxies:proxies",
    "apps": "backend.cli.apps:apps",
    "backup": "backend.cli.backup:backup_command",
    "restore": "backend.cli.backup:restore_command",
    "admins": "backend.cli.admins:admins",
    "audit": "backend.cli.audit:audit_command",
    "sandbox": "backend.cli.sandbox:sandbox",
    "workers": "backend.cli.workers:workers",
}
SANDBOX_MARKER = "🧪 SANDBOX · the Telegram sandbox's demo fleet, not Telegram"


@click.group(cls=FleetGroup, lazy_subcommands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="run_cli.py", message="%(prog)s %(version)s")
@click.option(
    "--as",
    "as_name",
    metavar="NAME",
    callback=check_as_name,
    help="The name the audit log records for this run (a script's); the actor stays cli:<OS user>.",
)
@click.pass_context
def cli(ctx: click.Context, as_name: str | None) -> None:
    """Manage the fleet's workers and accounts."""
    from config import load_env_file

    load_env_file()
    if os.environ.get("FLEET_SANDBOX") and not ctx.resilient_parsing:
        click.echo(SANDBOX_MARKER, err=True)  # on stderr: a `--json` document on stdout stays one document
    ctx.obj = Context(as_name)


def main() -> None:
    undecodable = [arg for arg in sys.argv[1:] if any("\udc80" <= ch <= "\udcff" for ch in arg)]
    if undecodable:
        from common.validation import printable

        # Python keeps bytes that are not UTF-8 as lone surrogates, which nothing downstream can encode.
        click.echo(f"error: an argument is not valid UTF-8 text: '{printable(undecodable[0])}'", err=True)
        sys.exit(2)
    # A reader that goes away (`accounts list | head`) raises BrokenPipeError, which FleetGroup lets through
    # for click to handle as it documents: quietly, exit 1.
    cli(prog_name="run_cli.py")


__all__ = ["cli", "main"]
