"""Entry point: `python run.py` — the admin bot (TG_BOT_TOKEN, ADMIN_IDS and the shared settings)."""

from __future__ import annotations

import asyncio
import sys

from config import EXIT_CONFIG, ConfigError, configure_logging, load_bot_settings, load_env_file


def main(argv: list[str]) -> int:
    import argparse

    from version import __version__

    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run the fleet's admin bot (TG_BOT_TOKEN, ADMIN_IDS; settings from the environment or .env).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)
    load_env_file()
    try:
        settings = load_bot_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
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
        print(f"error: {error}", file=sys.stderr)
        return 69
    except ConfigError as error:  # a schema upgrade that needs a setting
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except TelegramUnauthorizedError:
        print("error: Telegram rejected TG_BOT_TOKEN (check it with @BotFather)", file=sys.stderr)
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        print(f"error: cannot reach the Bot API at {settings.api_server}: {error}", file=sys.stderr)
        return 69
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
