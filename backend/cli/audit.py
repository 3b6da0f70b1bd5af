"""`run_cli.py audit`: the audit log, newest first — who (the bot's admins, `cli:<OS user>` with its `--as` name,
the backend) did what to which targets, with which parameters (secrets masked) and how it ended. Read only:
nothing in the product edits a row. Over `backend.audit_service`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from backend.cli.base import Context, emit_json, json_option, pass_context, table

MAX_LIMIT = 1000
TARGETS_SHOWN = 3


class SinceType(click.ParamType):
    """A time span back from now (`30m`, `1h`, `7d`, `2w`) or a date or ISO time (`2026-12-01`, UTC unless it
    says), or a usage error saying so."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        from backend.audit_service import InvalidSince, parse_since

        try:
            return parse_since(str(value))
        except InvalidSince as error:
            self.fail(str(error), param, ctx)


def _utc(moment: datetime) -> str:
    return (moment.astimezone(UTC) if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M:%S")


def _who(view: Any) -> str:
    """The actor, and the name recorded beside it unless it says the same (`cli:ann` acting as ann)."""
    if not view.actor_name or view.actor.endswith(f":{view.actor_name}"):
        return str(view.actor)
    return f"{view.actor} ({view.actor_name})"


def _targets(targets: tuple[str, ...]) -> str:
    shown = " ".join(targets[:TARGETS_SHOWN])
    more = len(targets) - TARGETS_SHOWN
    return (shown + (f" +{more}" if more > 0 else "")) or "-"


@click.command("audit")
@click.option("--since", type=SinceType(), help="Only entries since a span back (30m, 1h, 7d) or a date (2026-12-01).")
@click.option("--actor", help="Only this actor (bot:123, cli:ops) or name, as a whole or a part.")
@click.option("--target", help="Only entries about this target: account:17, worker:fra-1, proxy:3, admin:42.")
@click.option("--action", help="Only actions starting with this (account., board.ban).")
@click.option("--before", "before_id", type=click.IntRange(min=1), help="Only entries older than this ID (paging).")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, help="At most this many entries."
)
@json_option
@pass_context
def audit_command(
    context: Context,
    since: datetime | None,
    actor: str | None,
    target: str | None,
    action: str | None,
    before_id: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """The audit log, newest first: who did what, to which targets, and how it ended.

    \b
    Examples:
      run_cli.py audit --since 1h
      run_cli.py audit --actor cli:deploy --target worker:fra-1 --json
      run_cli.py audit --action account.remove --since 2026-12-01
    """
    views = context.plane().audit.entries(
        since=since, actor=actor, target=target, action=action, before_id=before_id, limit=limit
    )
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no audit entries" + (" match" if any((since, actor, target, action, before_id)) else ""))
        return
    rows = [
        [
            str(v.id),
            _utc(v.at),
            _who(v),
            v.role,
            v.action,
            _targets(v.targets),
            v.outcome,
        ]
        for v in views
    ]
    click.echo(table(["ID", "TIME UTC", "ACTOR", "ROLE", "ACTION", "TARGETS", "OUTCOME"], rows))
    if len(views) == limit:
        click.echo(f"\nolder entries: the same command with --before {views[-1].id}")
