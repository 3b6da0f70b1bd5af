"""Entry point: `python run.py` — the admin bot (TG_BOT_TOKEN, ADMIN_IDS and the shared settings)."""

from __future__ import annotations

import asyncio
import sys

import click

from config import EXIT_CONFIG, EXIT_UNAVAILABLE, ConfigError, configure_logging, load_bot_settings, load_env_file
from version import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="run.py", message="%(prog)s %(version)s")
def main() -> None:
    """Run the fleet's admin bot (TG_BOT_TOKEN, ADMIN_IDS; settings from the environment or .env)."""
    sys.exit(run())


def run() -> int:
    load_env_file()
    try:
        settings = load_bot_settings()
    except ConfigError as error:
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    from bot.lean_import import import_aiogram

    import_aiogram()
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

    from backend.connections import ServiceUnavailable
    from bot.main import run_bot

    try:
        asyncio.run(run_bot(settings))
    except ServiceUnavailable as error:
        click.echo(f"error: {error}", err=True)
        return EXIT_UNAVAILABLE
    except ConfigError as error:  # a schema upgrade that needs a setting
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    except TelegramUnauthorizedError:
        click.echo("error: Telegram rejected TG_BOT_TOKEN (check it with @BotFather)", err=True)
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        click.echo(f"error: cannot reach the Bot API at {settings.api_server}: {error}", err=True)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    main(prog_name="run.py")
