"""Entry point: `python run_worker.py` runs this server's worker (settings from the environment or `.env`).

`--check` tests this host's set-up (Redis reachable, SECRET_KEY right, the name free) and exits non-zero on
a problem, registering nothing; `--version` prints the version; `--help` says so.
"""

from __future__ import annotations

import sys

import click

from config import EXIT_CONFIG, ConfigError, WorkerSettings, configure_logging, load_env_file, load_worker_settings
from version import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--check", "check_only", is_flag=True, help="Check Redis, SECRET_KEY and the name; start nothing.")
@click.version_option(__version__, prog_name="run_worker.py", message="%(prog)s %(version)s")
def main(check_only: bool) -> None:
    """Run this server's fleet worker: it registers in Redis under WORKER_NAME, heartbeats, consumes its Celery
    queue worker.<name> and runs the Telethon clients of its accounts. Settings come from the environment or
    .env (see .env.example)."""
    sys.exit(run(check_only))


def check(settings: WorkerSettings) -> int:
    from worker.check import run_checks

    checks = run_checks(settings)
    for item in checks:
        click.echo(f"{'ok ' if item.ok else 'ERR'}  {item.name:<10}  {item.detail}")
    failed = [item for item in checks if not item.ok]
    click.echo("all checks passed" if not failed else f"{len(failed)} problem(s)")
    return 0 if not failed else 1


def run(check_only: bool) -> int:
    load_env_file()
    try:
        settings = load_worker_settings()
    except ConfigError as error:
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    if check_only:
        return check(settings)
    configure_logging(settings.log_level)
    from worker.main import run_worker

    try:
        return run_worker(settings)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    main(prog_name="run_worker.py")
