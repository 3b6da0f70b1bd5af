"""The operators' CLI (click): thin commands over the fleet service, human tables or one JSON document.

Exit codes: 0 ok, 1 a domain error (unknown worker, refused action), 2 bad usage, 69 Redis or the database
unreachable, 78 bad configuration. Logs go to stderr; with `--json`, stdout carries exactly one document.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import click
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from celery_app import rejections
from common.validation import MAX_ROW_ID, has_unsafe_characters, is_ascii_number, printable
from config import EXIT_CONFIG, CliSettings, ConfigError, load_cli_settings, load_env_file, mask_url
from version import __version__

EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
F = TypeVar("F", bound=Callable[..., Any])


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain columns laid out by `rich`, which knows an emoji takes two cells (🟢 aligned), never wrapped."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), header_style="", highlight=False)
    for header in headers:
        grid.add_column(header, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*(Text(printable(cell)) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, emoji=False, highlight=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[], None]]:
    """A `rich` progress bar on stderr (stdout stays for the result); yields `advance()`. On a terminal it
    redraws in place; piped or captured, it prints its final state once."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


class AccountIdType(click.ParamType):
    """An account id as typed: ASCII digits within the range ids can take, or a usage error saying so."""

    name = "account_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not is_ascii_number(text) or not 1 <= int(text) <= MAX_ROW_ID:
            self.fail(f"'{printable(text)}' is not an account id (a whole number from 1 to {MAX_ROW_ID})", param, ctx)
        return int(text)


class SecondsType(click.ParamType):
    """A finite, positive number of seconds up to `maximum` (`nan` and `inf` are refused)."""

    name = "seconds"

    def __init__(self, maximum: float = 3600.0) -> None:
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or not 0 < number <= self.maximum:
            self.fail(f"'{printable(str(value))}' is not a number of seconds from 0 to {self.maximum:g}", param, ctx)
        return number


ACCOUNT_ID = AccountIdType()
SECONDS = SecondsType()


def say(text: str, err: bool = False) -> None:
    """Echo text that may carry outside data (Telegram names, addresses) with unsafe characters escaped."""
    click.echo(printable(text), err=err)


def emit_json(document: object) -> None:
    """One JSON document; characters that could hide or reorder text on a terminal are \\u-escaped."""
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    click.echo("".join(_json_escape(ch) if ch != "\n" and has_unsafe_characters(ch) else ch for ch in text))


def _json_escape(ch: str) -> str:
    units = ch.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2))


class Context:
    """Lazily loaded settings and connections for one CLI invocation."""

    def __init__(self) -> None:
        self._settings: CliSettings | None = None
        self._services: dict[str, Any] = {}

    @property
    def settings(self) -> CliSettings:
        if self._settings is None:
            self._settings = load_cli_settings()
        return self._settings

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        if name not in self._services:
            self._services[name] = factory()
        return self._services[name]

    def plane(self) -> Any:
        """The control plane's services for this invocation, each built on first use (`backend.control_plane`)."""
        from backend.control_plane import ControlPlane
        from config import load_board_limits, load_secret_key, plugins_dir

        return self.service(
            "plane",
            lambda: ControlPlane(
                self.settings.redis_url,
                self.settings.database_url,
                self.settings.timing.offline_after,
                secret_key=load_secret_key,
                plugins_dir=plugins_dir,
                board_limits=load_board_limits,
            ),
        )

    def redis(self) -> Any:
        return self.plane().redis

    def sessions(self) -> Any:
        return self.plane().sessions

    def fleet(self) -> Any:
        return self.plane().fleet


class FleetGroup(click.Group):
    """Turns the errors every command can meet into one line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from backend.connections import ServiceUnavailable
        from backend.errors import DOMAIN_ERRORS

        try:
            return super().invoke(ctx)
        except ConfigError as error:
            click.echo(f"config error: {error}", err=True)
            ctx.exit(EXIT_CONFIG)
        except ServiceUnavailable as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_UNAVAILABLE)
        except RedisError as error:
            settings = ctx.find_object(Context)
            where = mask_url(settings.settings.redis_url) if settings else "?"
            click.echo(f"error: Redis unreachable at {where}: {error}", err=True)
            ctx.exit(EXIT_UNAVAILABLE)
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            click.echo(f"error: database error: {reason}", err=True)
            ctx.exit(EXIT_UNAVAILABLE)
        except DOMAIN_ERRORS as error:
            raise click.ClickException(printable(str(error))) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, BrokenPipeError):
            raise
        except Exception as error:
            logging.getLogger(__name__).debug("unexpected error", exc_info=True)
            click.echo(
                f"internal error: {error.__class__.__name__}: {error} (set LOG_LEVEL=DEBUG for details)", err=True
            )
            ctx.exit(EXIT_SOFTWARE)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(function)


def pass_context(function: F) -> F:
    @click.pass_obj
    @functools.wraps(function)
    def wrapper(context: Context, *args: Any, **kwargs: Any) -> Any:
        return function(context, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="run_cli.py", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Manage the fleet's workers and accounts."""
    load_env_file()
    ctx.obj = Context()


def _status_cell(status: str, is_active: bool) -> str:
    icon = "🟢" if status == "online" else "🔴"
    return f"{icon} {status}" + ("" if is_active else " (deactivated)")


@cli.command("list")
@click.option("--active-only", is_flag=True, help="Only workers the admin switch has on.")
@json_option
@pass_context
def list_workers(context: Context, active_only: bool, as_json: bool) -> None:
    """List workers with live status."""
    views = context.fleet().list_workers(active_only=active_only)
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


def _count(running: int | None) -> str:
    """A worker's running count, or `?` while it is silent (its last report is no longer news)."""
    return "?" if running is None else str(running)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@cli.command("show")
@click.argument("name")
@json_option
@pass_context
def show_worker(context: Context, name: str, as_json: bool) -> None:
    """Show one worker and its recent events."""
    detail = context.fleet().get_worker(name)
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
        say(f"  {_when(event.at)}  {event.kind}{extra}{event.repeats}  [{event.actor}]")


@cli.command("activate")
@click.argument("name")
@pass_context
def activate(context: Context, name: str) -> None:
    """Turn a worker's admin switch on."""
    changed = context.fleet().set_active(name, True, actor())
    click.echo(f"worker '{name}' activated" if changed else f"worker '{name}' was already active")


@cli.command("deactivate")
@click.argument("name")
@pass_context
def deactivate(context: Context, name: str) -> None:
    """Turn a worker's admin switch off (no new accounts are started there)."""
    changed = context.fleet().set_active(name, False, actor())
    click.echo(f"worker '{name}' deactivated" if changed else f"worker '{name}' was already deactivated")


@cli.command("add")
@click.argument("name")
@click.option("--address", required=True, help="The server's address, shown to admins.")
@pass_context
def add(context: Context, name: str, address: str) -> None:
    """Pre-register a server; it shows 🔴 until a worker of that name heartbeats."""
    view = context.fleet().add_worker(name, address, actor())
    click.echo(
        f"worker '{view.name}' added ({view.address}); it shows 🔴 until `run_worker.py` "
        f"starts there with WORKER_NAME={view.name}"
    )


@cli.command("remove")
@click.argument("name")
@pass_context
def remove(context: Context, name: str) -> None:
    """Forget an offline worker."""
    context.fleet().remove_worker(name, actor())
    click.echo(f"worker '{name}' removed")


@cli.command("doctor")
@json_option
@pass_context
def doctor(context: Context, as_json: bool) -> None:
    """Check configuration, the database and Redis; print each problem."""
    from backend.doctor import run_checks

    checks = run_checks()
    problems = sum(0 if check.ok else 1 for check in checks)
    if as_json:
        emit_json({"ok": problems == 0, "checks": [check.to_json() for check in checks]})
        if problems:
            sys.exit(1)
        return
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        say(f"{mark}  {check.name:<10} {check.message}")
    if problems:
        click.echo(f"\n{problems} problem{'s' if problems != 1 else ''} found", err=True)
        sys.exit(1)


@cli.command("rekey")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_context
def rekey_command(context: Context, yes: bool, as_json: bool) -> None:
    """Re-encrypt every stored secret under SECRET_KEY's first key (rotation: SECRET_KEY=new,old)."""
    from backend.rekey import rekey

    box = context.plane().box
    if not box.rotating and not as_json:
        click.echo("SECRET_KEY lists one key: secrets are re-encrypted under it (nothing older to retire)", err=True)
    if not yes:
        click.confirm("re-encrypt every stored secret under the first key of SECRET_KEY?", abort=True, err=True)
    report = rekey(context.sessions(), context.redis(), box)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(
            f"re-encrypted {report.accounts} account(s), {report.board_users} board user(s) and "
            f"{report.redis_entries} Redis entr{'y' if report.redis_entries == 1 else 'ies'}"
        )
        for what in report.failed:
            click.echo(f"  not decryptable with any key in SECRET_KEY, left as is: {what}", err=True)
    if report.failed:
        sys.exit(1)


def main() -> None:
    undecodable = [arg for arg in sys.argv[1:] if any("\udc80" <= ch <= "\udcff" for ch in arg)]
    if undecodable:
        # Python keeps bytes that are not UTF-8 as lone surrogates, which nothing downstream can encode.
        click.echo(f"error: an argument is not valid UTF-8 text: '{printable(undecodable[0])}'", err=True)
        sys.exit(2)
    # A reader that goes away (`accounts list | head`) raises BrokenPipeError, which FleetGroup lets through
    # for click to handle as it documents: quietly, exit 1.
    cli(prog_name="run_cli.py")


from backend.cli_accounts import accounts  # noqa: E402 - it builds on the helpers above
from backend.cli_board import board  # noqa: E402 - likewise; it imports board/ only inside its commands
from backend.cli_plugins import plugins  # noqa: E402 - likewise

cli.add_command(accounts)
cli.add_command(board)
cli.add_command(plugins)
