"""What every command of the CLI shares: the per-invocation `Context`, the groups (`LazyGroup`, and `FleetGroup`
that turns errors into one line and the documented exit code), options and parameter types, and the output
helpers (`say`, `table`, `emit_json`, `progress_bar`, `ago`, `duration`, `actor`).

Importing this module costs click and the standard library only: settings, services, `rich` and the validation
helpers are imported when a command first uses them, so `--version` and `--help` start in a blink.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from backend.control_plane import ControlPlane
    from config import CliSettings

EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: an unexpected internal error
F = TypeVar("F", bound=Callable[..., Any])


# ---- output ---------------------------------------------------------------------------------------------


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

    from common.validation import printable

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


def say(text: str, err: bool = False) -> None:
    """Echo text that may carry outside data (Telegram names, addresses) with unsafe characters escaped."""
    from common.validation import printable

    click.echo(printable(text), err=err)


def emit_json(document: object) -> None:
    """One JSON document; characters that could hide or reorder text on a terminal are \\u-escaped."""
    import json

    from common.validation import has_unsafe_characters

    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    click.echo("".join(_json_escape(ch) if ch != "\n" and has_unsafe_characters(ch) else ch for ch in text))


def _json_escape(ch: str) -> str:
    units = ch.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2))


# ---- parameter types ------------------------------------------------------------------------------------


class AccountIdType(click.ParamType):
    """An account id as typed: ASCII digits within the range ids can take, or a usage error saying so."""

    name = "account_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from common.validation import MAX_ROW_ID, is_ascii_number, printable

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
            from common.validation import printable

            self.fail(f"'{printable(str(value))}' is not a number of seconds from 0 to {self.maximum:g}", param, ctx)
        return number


class AccountStatusChoice(click.Choice):
    """An account's live status (`unknown`: no live report), from the wire contract's vocabulary, which is
    imported only when the option is used or its command's help shown, not when the commands are listed."""

    def __init__(self) -> None:  # the choices are a property; nothing to pass on
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from celery_app.account_state import UNKNOWN, AccountStatus

        return (*(status.value for status in AccountStatus), UNKNOWN)


ACCOUNT_ID = AccountIdType()
SECONDS = SecondsType()
ACCOUNT_STATUS = AccountStatusChoice()


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")(function)


# ---- context --------------------------------------------------------------------------------------------


class Context:
    """Lazily loaded settings and services for one CLI invocation."""

    def __init__(self) -> None:
        self._settings: CliSettings | None = None
        self._plane: ControlPlane | None = None

    @property
    def settings(self) -> CliSettings:
        if self._settings is None:
            from config import load_cli_settings

            self._settings = load_cli_settings()
        return self._settings

    def plane(self) -> ControlPlane:
        """The control plane's services for this invocation, each built on first use (`backend.control_plane`)."""
        if self._plane is None:
            from backend.control_plane import ControlPlane
            from config import load_board_limits, load_secret_key, plugins_dir

            self._plane = ControlPlane(
                self.settings.redis_url,
                self.settings.database_url,
                self.settings.timing.offline_after,
                secret_key=load_secret_key,
                plugins_dir=plugins_dir,
                board_limits=load_board_limits,
            )
        return self._plane


def pass_context(function: F) -> F:
    @click.pass_obj
    @functools.wraps(function)
    def wrapper(context: Context, *args: Any, **kwargs: Any) -> Any:
        return function(context, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ---- groups ---------------------------------------------------------------------------------------------


class LazyGroup(click.Group):
    """A group whose sub-commands are named by where they live (`"backend.cli.workers:show_worker"`) and
    imported when first used (click's documented LazyGroup): `run_cli.py list` never imports `board`."""

    def __init__(self, *args: Any, lazy_subcommands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands and cmd_name not in self.commands:
            module, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy_subcommands[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as error:  # suggest among every command, not the loaded ones
            raise click.exceptions.NoSuchCommand(
                error.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None


class FleetGroup(LazyGroup):
    """Turns the errors every command can meet into one line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, BrokenPipeError):
            raise
        except Exception as error:  # noqa: BLE001 - each kind becomes its line and exit code below
            exit_for(ctx, error)


def exit_for(ctx: click.Context, error: Exception) -> None:
    """Say what went wrong in one line and exit with its code; a domain error is click's exit 1. What each
    kind is comes from where it is defined, imported only now that one was raised."""
    from config import EXIT_CONFIG, EXIT_UNAVAILABLE, ConfigError, mask_url

    if isinstance(error, ConfigError):
        click.echo(f"config error: {error}", err=True)
        ctx.exit(EXIT_CONFIG)
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from backend.connections import ServiceUnavailable
    from backend.errors import DOMAIN_ERRORS
    from common.redis_target import describe_redis_error
    from common.validation import printable

    if isinstance(error, ServiceUnavailable):
        click.echo(f"error: {error}", err=True)
        ctx.exit(EXIT_UNAVAILABLE)
    if isinstance(error, RedisError):
        context = ctx.find_object(Context)
        target = context.settings.redis_url if context else None
        where = mask_url(target) if target else "?"
        click.echo(f"error: Redis unreachable at {where}: {describe_redis_error(error, target)}", err=True)
        ctx.exit(EXIT_UNAVAILABLE)
    if isinstance(error, SQLAlchemyError):
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        click.echo(f"error: database error: {reason}", err=True)
        ctx.exit(EXIT_UNAVAILABLE)
    if isinstance(error, DOMAIN_ERRORS):
        raise click.ClickException(printable(str(error))) from None
    import logging

    logging.getLogger(__name__).debug("unexpected error", exc_info=error)
    click.echo(f"internal error: {error.__class__.__name__}: {error} (set LOG_LEVEL=DEBUG for details)", err=True)
    ctx.exit(EXIT_SOFTWARE)
