"""`run_cli.py accounts login`: a new account logged in from the terminal — the code Telegram sends, then the
2FA password if it has one — on the worker that will run it."""

from __future__ import annotations

import sys

import click

from backend.cli.accounts import wait_and_report
from backend.cli.base import Context, actor, pass_context, say


def _ask(prompt: str, hide_input: bool = False) -> str:
    """A prompt on stderr. Piped input is not echoed, so a visible prompt's line is ended here (getpass ends a
    hidden one's): else what is said next (a wrong code) would land on it."""
    answer: str = click.prompt(prompt, hide_input=hide_input, err=True)
    if not hide_input and not sys.stdin.isatty():
        click.echo(err=True)
    return answer


@click.command("login")
@click.option("--worker", required=True, help="The worker that will run the account.")
@click.option("--phone", required=True, help="The account's phone number, e.g. +79991234567.")
@click.option("--api-id", help="API ID from my.telegram.org; alone, that app of the pool (`apps list`).")
@click.option("--api-hash", help="Its API hash. Without --api-id and --api-hash an app of the pool is used.")
@click.option("--proxy", help="socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port")
@click.option("--start", "start_now", is_flag=True, help="Start the account once logged in.")
@pass_context
def login(
    context: Context,
    worker: str,
    phone: str,
    api_id: str | None,
    api_hash: str | None,
    proxy: str | None,
    start_now: bool,
) -> None:
    """Log an account in: asks for the code (and the 2FA password) in the terminal."""
    from backend.errors import LoginError

    if api_hash is not None and api_id is None:
        raise click.UsageError("--api-hash needs --api-id")
    service = context.plane().accounts
    step = service.begin_login(worker, phone, api_id, api_hash, proxy=proxy, actor=actor())
    click.echo(f"Telegram sent a login code to the account's app or by SMS ({step.login_id[:8]}).")
    click.echo("Type it with spaces, like 1 2 3 4 5: Telegram voids a code that is sent on as is.")
    try:
        while step.state != "authorized":
            try:
                if step.state == "password_needed":
                    step = service.submit_password(step.login_id, _ask("2FA password", hide_input=True))
                else:
                    step = service.submit_code(step.login_id, _ask("Code"))
            except LoginError as error:
                if not error.retry:
                    raise click.ClickException(str(error)) from None
                click.echo(f"{error}", err=True)
    except click.Abort:
        service.cancel_login(step.login_id)
        raise
    assert step.account is not None
    who = f"@{step.account.username}" if step.account.username else (step.account.name or "")
    say(f"logged in: account {step.account.id} ({step.account.phone_masked}) {who} on {step.account.worker}")
    if start_now:
        started = service.start(step.account.id, actor())
        click.echo(started.message)
        wait_and_report(context, step.account.id, 30.0, started.run)
