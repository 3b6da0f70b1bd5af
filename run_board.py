"""Entry point: `python run_board.py` — the anonymous board (BOARD_BOT_TOKEN, BOARD_WEBAPP_URL, BOARD_LISTEN and
the shared DATABASE_URL, REDIS_URL, SECRET_KEY): its bot, its Mini App and the Mini App's API in one process."""

from __future__ import annotations

import asyncio
import sys

import click

from config import EXIT_CONFIG, EXIT_UNAVAILABLE, ConfigError, configure_logging, load_board_settings, load_env_file
from version import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="run_board.py", message="%(prog)s %(version)s")
def main() -> None:
    """Run the anonymous board: its bot (BOARD_BOT_TOKEN), its Mini App and the Mini App's API on BOARD_LISTEN.
    Settings come from the environment or .env (see .env.example)."""
    sys.exit(run())


def run() -> int:
    load_env_file()
    try:
        settings = load_board_settings()
    except ConfigError as error:
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    from bot.lean_import import import_aiogram  # aiogram's types built on first use: less memory, faster start

    import_aiogram()
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

    from board.main import BoardUnavailable, run_board

    try:
        asyncio.run(run_board(settings))
    except BoardUnavailable as error:
        click.echo(f"error: {error}", err=True)
        return EXIT_UNAVAILABLE
    except ConfigError as error:  # a schema upgrade that needs a setting
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    except TelegramUnauthorizedError:
        click.echo("error: Telegram rejected BOARD_BOT_TOKEN (check it with @BotFather)", err=True)
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        click.echo(f"error: cannot reach the Bot API at {settings.api_server}: {error}", err=True)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    main(prog_name="run_board.py")
