"""`run_cli.py admins list | add | set-role | remove`: who may use the admin bot, and in which role, over
`backend.admins_service`. `ADMIN_IDS` keeps working and names the owners: they are listed here (source
ADMIN_IDS) but changed only in that setting. Adding, changing and removing are audited.
"""

from __future__ import annotations

from typing import Any

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
from common.roles import Role

ROLE = click.Choice([role.value for role in Role], case_sensitive=False)


class TelegramIdType(click.ParamType):
    """A Telegram user id as typed, or a usage error that says what one is (click's IntRange would say
    "not a valid integer range")."""

    name = "tg_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from backend.admins_service import AdminError, validate_tg_id

        try:
            return validate_tg_id(value)
        except AdminError as error:
            self.fail(str(error), param, ctx)


TG_ID = TelegramIdType()
ROLES_HELP = "owner: everything; operator: workers, accounts, proxies, plugins; viewer: reads; moderator: the board."


def _added(view: Any) -> str:
    return view.added_at.strftime("%Y-%m-%d %H:%M UTC") if view.added_at else "-"


def _said(view: Any) -> str:
    return f"{view.tg_id} ({view.name}, {view.role.value})" if view.name else f"{view.tg_id} ({view.role.value})"


@click.group("admins")
def admins() -> None:
    """Who may use the admin bot, and in which role (owners by ADMIN_IDS are listed, changed only there)."""


@admins.command("list")
@json_option
@pass_context
def list_admins(context: Context, as_json: bool) -> None:
    """The owners by ADMIN_IDS and the admins added here, with their roles."""
    views = context.plane().admins.list_admins()
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no admins: set ADMIN_IDS (the owners) or add one with `admins add TG_ID --role ROLE`")
        return
    rows = [
        [
            str(v.tg_id),
            v.role.value,
            v.name or "-",
            "ADMIN_IDS" if v.from_env else "admins",
            v.added_by or "-",
            _added(v),
        ]
        for v in views
    ]
    click.echo(table(["TG ID", "ROLE", "NAME", "SOURCE", "ADDED BY", "ADDED"], rows))


@admins.command("add", epilog=ROLES_HELP)
@click.argument("tg_id", type=TG_ID)
@click.option("--role", required=True, type=ROLE, help="owner, operator, viewer or moderator.")
@click.option("--name", default="", help="A name to tell them by (shown in lists and the audit log).")
@json_option
@pass_context
def add(context: Context, tg_id: int, role: str, name: str, as_json: bool) -> None:
    """Let the Telegram user TG_ID use the admin bot in a role."""
    view = context.plane().admins.add(tg_id, role, name, actor())
    if as_json:
        emit_json(view.to_json())
        return
    say(f"admin {_said(view)} added")


@admins.command("set-role", epilog=ROLES_HELP)
@click.argument("tg_id", type=TG_ID)
@click.argument("role", type=ROLE)
@json_option
@pass_context
def set_role(context: Context, tg_id: int, role: str, as_json: bool) -> None:
    """Give the admin TG_ID another ROLE (owner, operator, viewer or moderator)."""
    view = context.plane().admins.set_role(tg_id, role, actor())
    if as_json:
        emit_json(view.to_json())
        return
    say(f"admin {_said(view)}: role {view.role.value}")


@admins.command("remove")
@click.argument("tg_id", type=TG_ID)
@yes_option
@pass_context
def remove(context: Context, tg_id: int, yes: bool) -> None:
    """Take the admin bot away from TG_ID (asks first)."""
    service = context.plane().admins
    view = service.get(tg_id)
    if not view.from_env:  # an owner by ADMIN_IDS: the service says why not, nothing to ask
        confirm_or_refuse(yes, f"Remove admin {_said(view)}? They lose the admin bot at once.")
    service.remove(tg_id, actor())
    click.echo(f"admin {tg_id} removed")
