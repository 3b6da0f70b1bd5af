"""Entry point: `python run_backend.py [SECONDS]` — the reconciler (scan every SECONDS, default 10)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from config import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    ConfigError,
    configure_logging,
    load_backend_settings,
    load_env_file,
    load_proxy_policy,
    load_secret_key,
)
from version import __version__

DEFAULT_SCAN_SECONDS = 10.0
USAGE = "usage: run_backend.py [SECONDS] | --version | --help  (scan interval, a positive number; default 10)"


class ScanInterval(click.ParamType):
    """Seconds between scans: a number above 0 and below a day (as Python's `float` reads it)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < 86400:
            self.fail(f"{value!r} is not a positive number of seconds below 86400", param, ctx)
        return seconds


class BackendCommand(click.Command):
    """Bad usage (an interval that is not one, an extra argument, an unknown option) prints the one usage line
    and exits 2, as this entry point always has."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError:
            click.echo(USAGE, err=True)
            ctx.exit(2)


@click.command(cls=BackendCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("interval", metavar="[SECONDS]", type=ScanInterval(), default=DEFAULT_SCAN_SECONDS, required=False)
@click.version_option(__version__, prog_name="run_backend.py", message="%(prog)s %(version)s")
def main(interval: float) -> None:
    """Run the reconciler: it discovers workers, records their heartbeats and events, marks silent ones offline
    and drives the desired state, scanning every SECONDS (a positive number; default 10). Settings come from
    the environment or .env (see .env.example)."""
    sys.exit(run(interval))


def run(interval: float) -> int:
    load_env_file()
    try:
        settings = load_backend_settings()
        proxy_policy = load_proxy_policy()
    except ConfigError as error:
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    configure_logging(settings.log_level)

    from backend.account_sync import AccountSync
    from backend.connections import ServiceUnavailable
    from backend.control_plane import ControlPlane
    from backend.leader import LeaderLock
    from backend.proxy_health import ProxyHealth
    from backend.reconciler import Reconciler, run_reconciler

    # With SECRET_KEY (the control host's), what the scans send a worker is sealed to that worker's key.
    plane = ControlPlane(
        settings.redis_url,
        settings.database_url,
        settings.timing.offline_after,
        secret_key=load_secret_key,
        check_redis=False,
    )
    try:
        sessions = plane.sessions
    except ServiceUnavailable as error:
        click.echo(f"error: {error}", err=True)
        return EXIT_UNAVAILABLE
    except ConfigError as error:  # a schema upgrade that needs a setting (SECRET_KEY)
        click.echo(f"config error: {error}", err=True)
        return EXIT_CONFIG
    redis, dispatcher = plane.redis, plane.dispatcher
    accounts = AccountSync(dispatcher, lease_wait=settings.timing.offline_after + 5, cooldown=max(3 * interval, 15.0))
    operations, plugins = plane.operations, plane.plugins
    proxy_health = ProxyHealth(redis, sessions, dispatcher, settings.timing.offline_after, proxy_policy)
    reconciler = Reconciler(
        redis,
        sessions,
        settings.timing.offline_after,
        accounts,
        retention_days=settings.event_retention_days,
        audit_retention_days=settings.audit_retention_days,
        after_scan=[operations.reconcile, plugins.restore_mirror, proxy_health.step]
        + ([lambda: sealer.publish(redis)] if (sealer := plane.sealer) is not None else []),  # again after a loss
        on_operations_finished=operations.record,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = None
    if settings.metrics_listen:
        from backend.metrics import BackendMetrics, RoundTripProbe

        metrics = BackendMetrics()
        metrics.watch(redis, sessions, settings.timing.offline_after)
        try:
            metrics.serve(settings.metrics_listen)
        except OSError as error:
            click.echo(f"error: cannot serve metrics on {settings.metrics_listen}: {error}", err=True)
            return EXIT_UNAVAILABLE
        probe = RoundTripProbe(metrics, redis, dispatcher, settings.timing.offline_after)
        threading.Thread(target=probe.run, args=(stop,), name="roundtrip-probe", daemon=True).start()
    run_reconciler(reconciler, LeaderLock(redis), interval, stop, metrics)
    return 0


if __name__ == "__main__":
    main(prog_name="run_backend.py")
