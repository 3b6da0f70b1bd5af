"""Entry point: `python run_worker.py` runs this server's worker (settings from the environment or `.env`)."""

from __future__ import annotations

import sys

from config import EXIT_CONFIG, ConfigError, configure_logging, load_env_file, load_worker_settings


def main() -> int:
    load_env_file()
    try:
        settings = load_worker_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    from worker.main import run_worker

    try:
        return run_worker(settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
