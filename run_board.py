"""Entry point: `python run_board.py` — the anonymous board (BOARD_BOT_TOKEN, BOARD_WEBAPP_URL, BOARD_LISTEN and
the shared DATABASE_URL, REDIS_URL, SECRET_KEY): its bot, its Mini App and the Mini App's API in one process."""

from __future__ import annotations

import asyncio
import sys

from config import EXIT_CONFIG, ConfigError, configure_logging, load_board_settings, load_env_file

EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE


def main(argv: list[str]) -> int:
    import argparse

    from version import __version__

    parser = argparse.ArgumentParser(
        prog="run_board.py",
        description="Run the anonymous board: its bot (BOARD_BOT_TOKEN), its Mini App and the Mini App's API "
        "on BOARD_LISTEN. Settings come from the environment or .env (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)
    load_env_file()
    try:
        settings = load_board_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    from bot.lean_import import import_aiogram  # aiogram's types built on first use: less memory, faster start

    import_aiogram()
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

    from board.main import BoardUnavailable, run_board

    try:
        asyncio.run(run_board(settings))
    except BoardUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ConfigError as error:  # a schema upgrade that needs a setting
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except TelegramUnauthorizedError:
        print("error: Telegram rejected BOARD_BOT_TOKEN (check it with @BotFather)", file=sys.stderr)
        return EXIT_CONFIG
    except TelegramNetworkError as error:
        print(f"error: cannot reach the Bot API at {settings.api_server}: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
