"""`run_cli.py accounts export`: accounts' sessions written out in a portable format (`backend.session_export`),
one file (a `tdata` folder) per account with its JSON sidecar. The files are live credentials: the command asks
first (naming how many accounts; `--yes` for scripts), never prints a secret, and records who exported what in
each account's events and the audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from backend.cli.base import (
    ACCOUNT_ID,
    Context,
    actor,
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

# `common.session_formats.SessionFormat`'s values, spelt out so that `--help` imports none of the codecs.
FORMATS = ("telethon-string", "telethon-file", "pyrogram-string", "pyrogram-file", "tdata")


@click.command("export")
@click.argument("account_ids", nargs=-1, type=ACCOUNT_ID, metavar="[ID]...")
@click.option("--worker", help="Every account of this worker.")
@click.option("--all", "all_accounts", is_flag=True, help="Every account of the fleet.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="The format to write.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write into (made, 0700, if missing).",
)
@click.option("--force", is_flag=True, help="Replace files of the same name.")
@yes_option
@json_option
@pass_context
def export_accounts(
    context: Context,
    account_ids: tuple[int, ...],
    worker: str | None,
    all_accounts: bool,
    fmt: str,
    out: Path,
    force: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Write accounts' sessions to files: one per account (a folder for tdata), each with a .json sidecar.

    The files are live credentials: whoever holds one can use the account. Stop an account in the fleet before
    running its export elsewhere (one session used from two places is revoked: AUTH_KEY_DUPLICATED).

    \b
    Examples:
      run_cli.py accounts export 7 8 --format telethon-file --out ./export
      run_cli.py accounts export --worker fra-1 --format tdata --out ./export
      run_cli.py accounts export --all --format pyrogram-string --out ./export --yes
    """
    from backend.errors import AccountError
    from backend.session_export import refuse_replacing

    if sum(bool(x) for x in (account_ids, worker, all_accounts)) != 1:
        raise click.UsageError("choose accounts one way: IDs, --worker NAME or --all")
    exporter = context.plane().exporter
    chosen = exporter.select(account_ids, worker=worker)
    if not chosen:
        raise AccountError("no accounts match", "no_accounts")
    if not force:
        refuse_replacing(out, chosen, fmt)
    confirm_or_refuse(
        yes,
        f"Export {counted(len(chosen), 'account')} as {fmt} into {out}? The files hold live credentials: "
        "anyone who gets them can use the accounts.",
    )
    with progress_bar("exporting", len(chosen)) as advance:
        results = exporter.export(chosen, fmt, out, actor=actor(), force=force, each=lambda _result: advance())
    written = [r for r in results if r.ok]
    skipped = [r for r in results if not r.ok]
    if as_json:
        emit_json(
            {
                "format": fmt,
                "out": str(out.resolve()),
                "written": len(written),
                "skipped": len(skipped),
                "accounts": [r.to_json() for r in results],
            }
        )
    else:
        _print_results(results, out)
    if skipped:
        say(f"{len(skipped)} of {len(results)} account(s) skipped", err=True)
        click.get_current_context().exit(1)


def _print_results(results: list[Any], out: Path) -> None:
    rows = [
        [
            str(r.account_id),
            r.phone_masked,
            "✅ written" if r.ok else "⏭️ skipped",
            r.written[0].name if r.ok else (r.skipped.text if r.skipped else "-"),
        ]
        for r in results
    ]
    click.echo(table(["ID", "PHONE", "STATUS", "FILE"], rows))
    written = sum(1 for r in results if r.ok)
    say(f"exported {written} of {len(results)} account(s) into {out.resolve()}: keep these files private")
