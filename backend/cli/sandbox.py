"""`run_cli.py sandbox status | send | chat | flood | revoke | ban`: the Telegram sandbox `make run` starts when
nothing of Telegram is configured, driven from the terminal over its control channel (`sandbox.control`).

An ACCOUNT is the fleet's account id (`accounts list`), found in the sandbox by its Telegram user id; `@username`
or a `+phone` of the sandbox also do. Nothing here changes the fleet: these are what Telegram (the sandbox)
does to accounts, and the fleet sees them as it would see Telegram's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from backend.cli.base import Context, emit_json, json_option, pass_context, say, table


def _client() -> Any:
    import os

    from sandbox.control import ControlClient, control_file

    local = Path(os.environ.get("FLEET_LOCAL_DIR") or Path(__file__).resolve().parents[2] / ".local")
    return ControlClient(control_file(local))


def _call(command: str, **arguments: Any) -> Any:
    """The sandbox's answer; its refusal or absence is one line and exit 1, as a domain error is."""
    from sandbox.control import SandboxRefusal, SandboxUnavailable

    try:
        return _client().call(command, **arguments)
    except SandboxUnavailable as error:
        raise click.ClickException(f"{error}; `make run` starts one when nothing of Telegram is configured") from None
    except SandboxRefusal as refusal:
        raise click.ClickException(str(refusal)) from None


def _who(context: Context, account: str) -> int | str:
    """The sandbox's name for ACCOUNT: a fleet account id becomes its Telegram user id."""
    text = account.strip()
    if text.startswith(("@", "+")):
        return text
    if not text.isascii() or not text.isdigit():
        raise click.BadParameter(f"{account!r} is not an account id, an @username or a +phone", param_hint="ACCOUNT")
    view = context.plane().accounts.get_account(int(text), event_limit=0)
    if view.user_id is None:
        raise click.ClickException(f"account {view.id} has never logged in: the sandbox does not know it yet")
    return view.user_id


@click.group("sandbox")
def sandbox() -> None:
    """The Telegram sandbox on this machine: send to accounts as its people, read their chats, refuse on demand."""


@sandbox.command("status")
@json_option
def status(as_json: bool) -> None:
    """Where the sandbox listens, its accounts and who of them is connected, its people."""
    found = _call("status")
    if as_json:
        emit_json(found)
        return
    people = ", ".join(p["name"] + ("" if p["scripted"] else " (you)") for p in found["people"])
    chatter = f"every {found['chatter_every']:g} s" if found["chatter_every"] else "off"
    say(f"🧪 sandbox at {found['address']} (TG_MTPROTO_DC={found['dc']}), up {found['uptime']:.0f} s")
    say(f"accounts: {found['accounts']}, connected now: {found['connected']} ({found['connections']} connections)")
    say(f"messages: {found['messages']}; people: {people}; they write on their own: {chatter}")


@sandbox.command("send")
@click.option("--to", "to", required=True, metavar="ACCOUNT", help="Account id, @username or +phone.")
@click.option("--text", required=True, help="The message.")
@click.option("--as", "as_name", default="tester", show_default=True, help="Which of the sandbox's people writes.")
@json_option
@pass_context
def send(context: Context, to: str, text: str, as_name: str, as_json: bool) -> None:
    """A message to an account from one of the sandbox's people, pushed to its running client at once."""
    sent = _call("send", to=_who(context, to), text=text, as_name=as_name)
    if as_json:
        emit_json(sent)
        return
    where = "its running client got it" if sent["pushed_to"] else "no client of it is connected: it will read it later"
    say(f"sent to {sent['to']} as {sent['as']}: {where}")


@sandbox.command("chat")
@click.argument("account")
@click.option("--with", "with_name", metavar="NAME", help="Only the chat with this person or @username.")
@click.option("--limit", type=click.IntRange(1, 500), default=30, show_default=True, help="The last N messages.")
@json_option
@pass_context
def chat(context: Context, account: str, with_name: str | None, limit: int, as_json: bool) -> None:
    """The account's private chats as the sandbox sees them, oldest first."""
    found = _call("chat", who=_who(context, account), with_name=with_name, limit=limit)
    if as_json:
        emit_json(found)
        return
    if not found["messages"]:
        say(f"{found['account']} has no messages yet")
        return
    rows = [
        [
            datetime.fromtimestamp(m["date"]).strftime("%H:%M:%S"),
            ("→ " if m["out"] else "← ") + (m["to"] if m["out"] else m["from"]),
            m["text"].replace("\n", " ⏎ ") + (" ✓✓" if m["out"] and m.get("read") else ""),
        ]
        for m in found["messages"]
    ]
    say(f"{found['account']}'s chats (→ sent by it, ← received, ✓✓ read):")
    for line in table(["time", "with", "text"], rows).splitlines():
        say(line)


@sandbox.command("flood")
@click.argument("account")
@click.option("--seconds", type=click.IntRange(1, 86400), default=30, show_default=True, help="FLOOD_WAIT_<seconds>.")
@click.option("--calls", type=click.IntRange(1, 10000), default=1, show_default=True, help="How many calls get it.")
@click.option("--method", help="Only calls of this TL method, e.g. messages.sendMessage.")
@pass_context
def flood(context: Context, account: str, seconds: int, calls: int, method: str | None) -> None:
    """Telegram answers the account's next calls with FLOOD_WAIT, as it does an account that does too much."""
    done = _call("flood", who=_who(context, account), seconds=seconds, calls=calls, method=method)
    say(f"{done['account']}: the next {done['calls']} call(s) get FLOOD_WAIT_{done['seconds']}")


@sandbox.command("revoke")
@click.argument("account")
@pass_context
def revoke(context: Context, account: str) -> None:
    """Every session of the account ends, as if its owner pressed "terminate all other sessions" elsewhere."""
    done = _call("revoke", who=_who(context, account))
    say(f"{done['account']}: every session revoked (AUTH_KEY_UNREGISTERED from now on)")


@sandbox.command("ban")
@click.argument("account")
@click.option("--lift", is_flag=True, help="Lift the ban instead.")
@pass_context
def ban(context: Context, account: str, lift: bool) -> None:
    """Telegram bans the account: every call answers USER_DEACTIVATED_BAN (`--lift` ends it)."""
    done = _call("ban", who=_who(context, account), banned=not lift)
    say(f"{done['account']}: " + ("banned (USER_DEACTIVATED_BAN)" if done["banned"] else "the ban is lifted"))
