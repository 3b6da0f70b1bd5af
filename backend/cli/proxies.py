"""`run_cli.py proxies …` (the pool: add, list, check, remove) and `run_cli.py accounts set-proxy` (pins).

Thin commands over the proxies service. A proxy is shown as scheme://host:port with its user masked; its URL
and credentials are never printed.
"""

from __future__ import annotations

from typing import Any

import click

from backend.cli.base import (
    ACCOUNT_ID,
    Context,
    actor,
    ago,
    confirm_or_refuse,
    counted,
    emit_json,
    json_option,
    pass_context,
    say,
    table,
    yes_option,
)

STATE_ICONS = {"alive": "🟢", "slow": "🐢", "dead": "🔴", "unknown": "❔"}
PROXY_ID = click.IntRange(1, 2**31 - 1)


@click.group("proxies")
def proxies() -> None:
    """The pool of proxies accounts are pinned to: add, list, check, remove."""


def _latency(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def _checked(view: Any) -> str:
    if view.checked_at is None:
        return "never"
    from datetime import UTC, datetime

    return ago((datetime.now(UTC) - view.checked_at).total_seconds())


def _error(code: str) -> str:
    from celery_app.proxy_health import PROBE_ERRORS

    return PROBE_ERRORS.get(code, code) if code else ""


@proxies.command("add")
@click.argument("urls", nargs=-1, required=True)
@click.option("--group", default="default", show_default=True, help="The group (region) the proxies belong to.")
@click.option("--max-accounts", type=click.IntRange(1, 1_000_000), help="At most this many accounts on each.")
@json_option
@pass_context
def add(context: Context, urls: tuple[str, ...], group: str, max_accounts: int | None, as_json: bool) -> None:
    """Add proxies: socks5://user:pass@host:port, socks4://host:port, http://user:pass@host:port,
    mtproxy://SECRET@host:port (the URLs are stored encrypted)."""
    added = context.plane().proxies.add(list(urls), group, max_accounts, actor())
    if as_json:
        emit_json([{"id": a.id, "proxy": a.display, "added": a.added} for a in added])
        return
    for item in added:
        verb = "added" if item.added else "already in the pool"
        say(f"proxy {item.id} {item.display}: {verb}")


@proxies.command("list")
@click.option("--group", help="Only this group's proxies.")
@json_option
@pass_context
def list_proxies(context: Context, group: str | None, as_json: bool) -> None:
    """List the proxies with their accounts, cap and health."""
    views = context.plane().proxies.list_proxies(group)
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no proxies: add some with `proxies add URL…`")
        return
    rows = [
        [
            str(v.id),
            v.display,
            v.group,
            str(v.accounts),
            str(v.max_accounts) if v.max_accounts is not None else "-",
            f"{STATE_ICONS.get(v.state, '')} {v.state}".strip(),
            _latency(v.latency_ms),
            _checked(v),
            _error(v.error) + (f" ({v.failures} in a row)" if v.failures else ""),
        ]
        for v in views
    ]
    click.echo(table(["ID", "PROXY", "GROUP", "ACCOUNTS", "CAP", "STATE", "LATENCY", "CHECKED", "ERROR"], rows))


@proxies.command("show")
@click.argument("proxy_id", type=PROXY_ID)
@json_option
@pass_context
def show(context: Context, proxy_id: int, as_json: bool) -> None:
    """Show one proxy, its health and its recent events."""
    view, events = context.plane().proxies.get_proxy(proxy_id)
    if as_json:
        emit_json({**view.to_json(), "events": [event.to_json() for event in events]})
        return
    cap = f" of {view.max_accounts}" if view.max_accounts is not None else ""
    health = f"{STATE_ICONS.get(view.state, '')} {view.state}".strip()
    if view.error:
        health += f" — {_error(view.error)} ({view.failures} in a row)"
    lines = [
        ("Proxy", f"{view.id} {view.display}"),
        ("Group", view.group),
        ("Accounts", f"{view.accounts}{cap}"),
        ("State", health),
        ("Latency", _latency(view.latency_ms)),
        ("Checked", _checked(view)),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    if events:
        click.echo("\nRecent events:")
    for event in events:
        extra = f" — {event.detail}" if event.detail else ""
        say(f"  {event.at.strftime('%Y-%m-%d %H:%M:%S UTC')}  {event.kind}{extra}{event.repeats}  [{event.actor}]")


@proxies.command("check")
@click.argument("proxy_ids", nargs=-1, type=PROXY_ID)
@json_option
@pass_context
def check(context: Context, proxy_ids: tuple[int, ...], as_json: bool) -> None:
    """Check proxies now (all, or these) from a worker: a connection through each to a data centre."""
    views = context.plane().proxies.check(list(proxy_ids) or None)
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no proxies to check")
        return
    rows = [
        [
            str(v.id),
            v.display,
            v.worker,
            "ok" if v.ok else f"failed: {_error(v.error)}",
            _latency(v.latency_ms),
            f"{STATE_ICONS.get(v.state, '')} {v.state}".strip(),
        ]
        for v in views
    ]
    click.echo(table(["ID", "PROXY", "WORKER", "CHECK", "LATENCY", "STATE"], rows))


@proxies.command("remove")
@click.argument("proxy_id", type=PROXY_ID)
@click.option("--reassign", is_flag=True, help="Move its accounts to other proxies of its group first.")
@yes_option
@pass_context
def remove(context: Context, proxy_id: int, reassign: bool, yes: bool) -> None:
    """Remove a proxy from the pool (refused while accounts use it, unless --reassign); asks first."""
    service = context.plane().proxies
    view, _events = service.get_proxy(proxy_id, event_limit=0)
    if reassign or not view.accounts:  # else the service says why not: nothing to ask
        moving = f" and move its {counted(view.accounts, 'account')} to other proxies of group {view.group}"
        confirm_or_refuse(
            yes,
            f"Remove proxy {view.id} ({view.display}){moving if view.accounts else ''}? "
            "Its address and credentials are deleted.",
        )
    moved = service.remove(proxy_id, reassign, actor())
    for item in moved:
        _say_pinned(item)
    click.echo(f"proxy {proxy_id} removed")


def _say_pinned(item: Any) -> None:
    after = item.after or "no proxy"
    if not item.changed:
        say(f"account {item.account_id}: stays on {after}")
        return
    restarted = " (restarting onto it)" if item.restarted else ""
    say(f"account {item.account_id}: {item.before or 'no proxy'} -> {after}{restarted}")


@click.command("set-proxy")
@click.argument("account_ids", nargs=-1, required=True, type=ACCOUNT_ID)
@click.option("--proxy", "proxy_id", type=PROXY_ID, help="Pin to this proxy.")
@click.option("--group", help="Pin to the least loaded proxy of this group (an account already in it stays).")
@click.option("--none", "no_proxy", is_flag=True, help="No proxy: connect directly.")
@yes_option
@json_option
@pass_context
def set_proxy(
    context: Context,
    account_ids: tuple[int, ...],
    proxy_id: int | None,
    group: str | None,
    no_proxy: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Pin accounts to a proxy of the pool (running ones restart onto it); for more than one, asks first."""
    if [proxy_id is not None, group is not None, no_proxy].count(True) != 1:
        raise click.UsageError("give exactly one of --proxy ID, --group GROUP, --none")
    count = len(set(account_ids))
    if count > 1:
        onto = f"proxy {proxy_id}" if proxy_id is not None else f"group {group}" if group else "no proxy"
        confirm_or_refuse(yes, f"Pin {counted(count, 'account')} to {onto}? Running ones restart.")
    pinned = context.plane().proxies.set_proxy(list(account_ids), actor(), proxy_id, group, no_proxy)
    if as_json:
        emit_json(
            [
                {
                    "account": p.account_id,
                    "before": p.before,
                    "after": p.after,
                    "changed": p.changed,
                    "restarted": p.restarted,
                }
                for p in pinned
            ]
        )
        return
    for item in pinned:
        _say_pinned(item)
