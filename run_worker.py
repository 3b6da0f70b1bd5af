"""Entry point: `python run_worker.py` runs this server's worker (settings from the environment or `.env`).

`--check` tests this host's set-up (Redis reachable, SECRET_KEY right, the name free) and exits non-zero on
a problem, registering nothing; `--version` prints the version; `--help` says so.
"""

from __future__ import annotations

import argparse
import sys

from config import EXIT_CONFIG, ConfigError, WorkerSettings, configure_logging, load_env_file, load_worker_settings
from version import __version__


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_worker.py",
        description="Run this server's fleet worker: it registers in Redis under WORKER_NAME, heartbeats, "
        "consumes its Celery queue worker.<name> and runs the Telethon clients of its accounts. "
        "Settings come from the environment or .env (see .env.example).",
    )
    parser.add_argument("--check", action="store_true", help="check Redis, SECRET_KEY and the name; start nothing")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def check(settings: WorkerSettings) -> int:
    from worker.check import run_checks

    checks = run_checks(settings)
    for item in checks:
        print(f"{'ok ' if item.ok else 'ERR'}  {item.name:<10}  {item.detail}")
    failed = [item for item in checks if not item.ok]
    print("all checks passed" if not failed else f"{len(failed)} problem(s)")
    return 0 if not failed else 1


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    load_env_file()
    try:
        settings = load_worker_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        return check(settings)
    configure_logging(settings.log_level)
    from worker.main import run_worker

    try:
        return run_worker(settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
