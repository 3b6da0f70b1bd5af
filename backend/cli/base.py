"""What every command of the CLI shares: the per-invocation `Context`, the groups (`LazyGroup`, and `FleetGroup`
that turns errors into one line and the documented exit code), options and parameter types, and the output
helpers (`say`, `table`, `emit_json`, `progress_bar`, `ago`, `duration`, `actor`), and the confirmation every
command that affects many accounts or cannot be undone asks for (`yes_option`, `confirm_or_refuse`).

Who acted: the CLI runs as the operator of the machine it runs on. Every change is recorded with the actor
`cli:<OS user>` in the role `shell` (roles are not enforced here: whoever can run the CLI can do everything),
under the name given with the root's `--as NAME` (a script's), else the OS user's.

Importing this module costs click and the standard library only: settings, services, `rich` and the validation
helpers are imported when a command first uses them, so `--version` and `--help` start in a blink.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import importlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from backend.control_plane import ControlPlane
    from config import CliSettings

EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: an unexpected internal error
F = TypeVar("F", bound=Callable[..., Any])


# ---- output ---------------------------------------------------------------------------------------------


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def actor() -> str:
    """Who acts, as the audit log and the events record it: `cli:<OS user>` (the name, `--as`, goes apart)."""
    user = os_user()
    return f"cli:{user}" if user else "cli"


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


MAX_AS_NAME = 64


def check_as_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """`--as NAME`: printable text of 1 to 64 characters (it is shown in the audit log), else a usage error."""
    if value is None:
        return None
    name = value.strip()
    if not 1 <= len(name) <= MAX_AS_NAME or not name.isprintable():
        raise click.BadParameter(f"give a name of 1 to {MAX_AS_NAME} printable characters", param_hint="--as")
    from common.validation import has_unsafe_characters

    if has_unsafe_characters(name):
        raise click.BadParameter("the name holds characters that could hide or reorder text", param_hint="--as")
    return name


# ---- confirmations --------------------------------------------------------------------------------------


def yes_option(function: F) -> F:
    return click.option(
        "--yes", is_flag=True, help="Do not ask for confirmation (scripts: needed where there is no terminal)."
    )(function)


def can_ask() -> bool:
    """Whether there is a person to confirm: standard input is a terminal."""
    return sys.stdin.isatty()


def confirm_or_refuse(yes: bool, question: str) -> None:
    """Go on with `--yes`; else ask `question` (naming the count: "Stop 143 accounts on fra-1?") on a terminal,
    or, with none to ask on, refuse in one line that repeats it. A "no" or a refusal exits 1, nothing changed."""
    if yes:
        return
    from common.validation import printable

    shown = printable(question)
    if not can_ask():
        raise click.ClickException(f"{shown} Not done: no terminal to confirm on; pass --yes to confirm")
    if not click.confirm(shown, default=False, err=True):
        click.echo("cancelled: nothing changed", err=True)
        click.get_current_context().exit(1)


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`1 account`, `143 accounts`."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


# ---- context --------------------------------------------------------------------------------------------


class Context:
    """Lazily loaded settings and services for one CLI invocation, and who it acts as (`--as NAME`)."""

    def __init__(self, as_name: str | None = None) -> None:
        self._settings: CliSettings | None = None
        self._plane: ControlPlane | None = None
        self.as_name = as_name
        self._acting = False

    @property
    def acting_name(self) -> str:
        """The name the audit log shows beside the actor: `--as NAME`, else the OS user."""
        return self.as_name or os_user()

    def enter_acting(self) -> None:
        """Record this invocation's changes in the role `shell` under `acting_name`, until the CLI's root
        context closes (entered on first need: the audit module imports SQLAlchemy, which `--help` must not)."""
        ctx = click.get_current_context(silent=True)
        if self._acting or ctx is None:
            return
        from common.roles import SHELL_ROLE
        from database.audit import acting_as

        ctx.find_root().with_resource(acting_as(SHELL_ROLE, self.acting_name, actor()))
        self._acting = True

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
            from config import load_board_limits, load_owner_ids, load_secret_key, plugins_dir

            self._plane = ControlPlane(
                self.settings.redis_url,
                self.settings.database_url,
                self.settings.timing.offline_after,
                secret_key=load_secret_key,
                plugins_dir=plugins_dir,
                board_limits=load_board_limits,
                owner_ids=load_owner_ids,
            )
        self.enter_acting()
        return self._plane


@contextlib.contextmanager
def recorded(context: Context, engine: Engine, action: str, on_error: bool = True) -> Iterator[dict[str, Any]]:
    """One audit row for what the CLI runs itself over the whole database (`backup`, `restore`, `rekey`: functions,
    not service methods that record their own), written through `engine` when the block ends: `ok`, or the
    error's code (unless `on_error` is False: a restore that failed left the database as it was, and a row
    there would make an empty one not empty). A database at a schema from before the audit log (a backup
    migrates nothing) gets no row. The block may add parameters to the dict it is given."""
    from database.audit import error_outcome

    context.enter_acting()
    params: dict[str, Any] = {}
    try:
        yield params
    except Exception as error:
        if on_error:
            try:
                _record(engine, action, params, error_outcome(error))
            except Exception:  # what went wrong first is what the operator is told
                import logging

                logging.getLogger(__name__).debug("the audit row of a failed %s was not written", action, exc_info=True)
        raise
    _record(engine, action, params, "ok")


def _record(engine: Engine, action: str, params: dict[str, Any], outcome: str) -> None:
    from sqlalchemy import inspect
    from sqlalchemy.orm import Session

    from database.audit import record_audit
    from database.models import AuditEntry

    if not inspect(engine).has_table(AuditEntry.__tablename__):
        return
    with Session(engine) as session, session.begin():
        record_audit(session, actor(), action, (), params, outcome)


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
