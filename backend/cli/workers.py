"""`run_cli.py list | show | activate | deactivate | add | remove` and `workers trust | rotate-key | login`: the
fleet's workers, over the fleet service (and `backend.worker_logins` for a worker's own Redis login)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from backend.cli.base import (
    Context,
    actor,
    ago,
    confirm_or_refuse,
    duration,
    emit_json,
    json_option,
    pass_context,
    say,
    table,
    yes_option,
)

if TYPE_CHECKING:
    from datetime import datetime

    from backend.worker_logins import IssuedLogin


def _status_cell(status: str, is_active: bool) -> str:
    icon = "🟢" if status == "online" else "🔴"
    return f"{icon} {status}" + ("" if is_active else " (deactivated)")


def _count(running: int | None) -> str:
    """A worker's running count, or `?` while it is silent (its last report is no longer news)."""
    return "?" if running is None else str(running)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command("list")
@click.option("--active-only", is_flag=True, help="Only workers the admin switch has on.")
@json_option
@pass_context
def list_workers(context: Context, active_only: bool, as_json: bool) -> None:
    """List workers with live status."""
    views = context.plane().fleet.list_workers(active_only=active_only)
    if as_json:
        emit_json([view.to_json() for view in views])
        return
    if not views:
        click.echo("no workers yet: start one with `python run_worker.py` or pre-register one with `add`")
        return
    rows = [
        [
            _status_cell(v.status.value, v.is_active),
            v.name,
            v.address or "-",
            f"{_count(v.accounts_running)}/{v.accounts}",
            v.version or "-",
            f"last seen {ago(v.seconds_since_heartbeat)}",
        ]
        for v in views
    ]
    click.echo(table(["STATUS", "NAME", "ADDRESS", "ACCOUNTS", "VERSION", "HEARTBEAT"], rows))
    online = sum(1 for v in views if v.status.value == "online")
    click.echo(f"\n{online} online, {len(views) - online} offline")


@click.command("show")
@click.argument("name")
@json_option
@pass_context
def show_worker(context: Context, name: str, as_json: bool) -> None:
    """Show one worker and its recent events."""
    from celery_app import rejections

    detail = context.plane().fleet.get_worker(name)
    if as_json:
        emit_json(detail.to_json())
        return
    w = detail.worker
    lines = [
        ("Worker", w.name),
        ("Status", _status_cell(w.status.value, w.is_active)),
        ("Address", w.address or "-"),
        ("Last heartbeat", f"{_when(w.last_heartbeat)} ({ago(w.seconds_since_heartbeat)})"),
        ("Uptime", duration(w.uptime_seconds)),
        ("Host / pid", f"{w.host or '-'} / {w.pid or '-'}"),
        ("Version", w.version or "-"),
        ("Accounts", f"{_count(w.accounts_running)} running of {w.accounts}"),
        ("Key", _key_cell(w.key, w.key_pending, w.name)),
        ("Redis login", _login_cell(detail.own_login, w.name)),
    ]
    if detail.rejected:
        reasons = ", ".join(f"{rejections.describe(r)} ×{n}" for r, n in sorted(detail.rejected.items()))
        lines.append(("Rejected messages", f"{detail.rejected_total} ({reasons})"))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    click.echo("\nRecent events:" if detail.events else "\nNo events recorded yet.")
    for event in detail.events:
        extra = f" — {event.detail}" if event.detail else ""
        say(f"  {_when(event.latest)}  {event.kind}{extra}{event.repeats}  [{event.actor}]")


def _key_cell(key: str | None, pending: str | None, name: str) -> str:
    if pending is not None:
        return f"⚠️ presents {pending}, not the pinned {key}: no work until trusted (run_cli.py workers trust {name})"
    return f"{key} (pinned)" if key else "none presented yet"


def _login_cell(own: bool | None, name: str) -> str:
    if own is None:
        return "unknown (the control plane's Redis login may not run ACL commands)"
    if own:
        return f"its own (fleet-worker-{name})"
    return f"⚠️ the shared one: issue its own with `run_cli.py workers login {name}`"


def _print_login(issued: IssuedLogin) -> None:
    """The login, once: REDIS_URL and the worker host's .env on stdout; what to know about it on stderr."""
    where = ", ".join(issued.nodes)
    say(f"Redis login {issued.username} issued on {where}. It is stored nowhere and shown only now:", err=True)
    click.echo(f"REDIS_URL={issued.redis_url}")
    click.echo(err=True)
    say(".env for the worker's host (chmod 600; it needs no SECRET_KEY):", err=True)
    click.echo(issued.env, nl=False)
    _login_warnings(issued)


def _login_warnings(issued: IssuedLogin) -> None:
    for missed in issued.missed:
        say(f"warning: not set on {missed}; issue it again once that node is back, or copy its ACL file", err=True)
    if not issued.saved:
        say(
            "warning: Redis has no ACL file (`aclfile` in redis.conf): the login lives in memory and is lost when "
            "Redis restarts",
            err=True,
        )
    say(
        "A worker still running with an old password keeps the connections it has, and any new one is refused: "
        "put these settings on its host and restart it there.",
        err=True,
    )


@click.group("workers")
def workers() -> None:
    """Workers' identities: the keys they present (`list`, `show`, `add`… are top-level commands)."""


@workers.command("trust")
@click.argument("name")
@yes_option
@pass_context
def trust(context: Context, name: str, yes: bool) -> None:
    """Trust the new key a worker presents (after you reinstalled its host): it gets work again."""
    pending = context.plane().fleet.get_worker(name).worker
    if pending.key_pending is not None:  # else nothing to ask about: the service says so (and records it)
        confirm_or_refuse(
            yes,
            f"Trust key {pending.key_pending} for worker {name} instead of {pending.key}? "
            "Only if you reinstalled it yourself",
        )
    say(f"worker '{name}': key {context.plane().fleet.trust_key(name, actor())} trusted")


@workers.command("login")
@click.argument("name")
@yes_option
@json_option
@pass_context
def login(context: Context, name: str, yes: bool, as_json: bool) -> None:
    """Issue a Redis login of the worker's own (again: a new password), printed once.

    The login (ACL user fleet-worker-NAME) reaches only that worker's keys, queue and channels, with the
    commands a worker runs; put the printed REDIS_URL (or the .env) on its host and restart it there. With
    Redis Sentinel it is set on the primary and every replica. Nothing of it is stored: lost, issue it again."""
    plane = context.plane()
    detail = plane.fleet.get_worker(name, event_limit=0)
    if detail.own_login:
        question = (
            f"Issue a new Redis login for worker {name}? Its current password stops working at once: "
            "put the new settings on its host and restart it."
        )
    else:
        question = f"Issue a Redis login of its own for worker {name}? It is shown once and stored nowhere."
    confirm_or_refuse(yes, question)
    issued = plane.worker_logins.issue(name, actor())
    if as_json:
        emit_json(issued.to_json())
        _login_warnings(issued)
        return
    _print_login(issued)


@workers.command("rotate-key")
@click.argument("name")
@pass_context
def rotate_key(context: Context, name: str) -> None:
    """The worker makes a new key pair; its accounts' secrets are sealed to the new key from now on."""
    say(f"worker '{name}': new key {context.plane().key_rotation.rotate(name, actor())} pinned")


@click.command("activate")
@click.argument("name")
@pass_context
def activate(context: Context, name: str) -> None:
    """Turn a worker's admin switch on."""
    changed = context.plane().fleet.set_active(name, True, actor())
    click.echo(f"worker '{name}' activated" if changed else f"worker '{name}' was already active")


@click.command("deactivate")
@click.argument("name")
@pass_context
def deactivate(context: Context, name: str) -> None:
    """Turn a worker's admin switch off (no new accounts are started there)."""
    changed = context.plane().fleet.set_active(name, False, actor())
    click.echo(f"worker '{name}' deactivated" if changed else f"worker '{name}' was already deactivated")


@click.command("add")
@click.argument("name")
@click.option("--address", required=True, help="The server's address, shown to admins.")
@click.option(
    "--issue-login",
    is_flag=True,
    help="Also issue the worker's own Redis login (only its keys and queue) and print it once, with the .env "
    "for its host.",
)
@pass_context
def add(context: Context, name: str, address: str, issue_login: bool) -> None:
    """Pre-register a server; it shows 🔴 until a worker of that name heartbeats."""
    from backend.worker_logins import LoginError

    plane = context.plane()
    view = plane.fleet.add_worker(name, address, actor())
    click.echo(
        f"worker '{view.name}' added ({view.address}); it shows 🔴 until `run_worker.py` "
        f"starts there with WORKER_NAME={view.name}"
    )
    if not issue_login:
        return
    try:
        issued = plane.worker_logins.issue(view.name, actor())
    except LoginError as error:
        raise click.ClickException(f"worker '{view.name}' added, but its Redis login was not issued: {error}") from None
    _print_login(issued)


@click.command("remove")
@click.argument("name")
@yes_option
@pass_context
def remove(context: Context, name: str, yes: bool) -> None:
    """Forget an offline worker that runs no accounts (asks first); its own Redis login is deleted with it."""
    fleet = context.plane().fleet
    worker = fleet.get_worker(name, event_limit=0).worker
    if worker.status.value != "online" and not worker.accounts:  # else the service says why not: nothing to ask
        where = f" ({worker.address})" if worker.address else ""
        confirm_or_refuse(yes, f"Remove worker '{worker.name}'{where}? Only adding it again brings it back.")
    fleet.remove_worker(name, actor())
    click.echo(f"worker '{name}' removed")
