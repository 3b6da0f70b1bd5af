"""Entry point: `python run_backend.py [SECONDS]` — the reconciler (scan every SECONDS, default 10)."""

from __future__ import annotations

import signal
import sys
import threading

from config import EXIT_CONFIG, ConfigError, configure_logging, load_backend_settings, load_env_file

DEFAULT_SCAN_SECONDS = 10.0
USAGE = "usage: run_backend.py [SECONDS] | --version | --help  (scan interval, a positive number; default 10)"


def parse_interval(argv: list[str]) -> float | None:
    if not argv:
        return DEFAULT_SCAN_SECONDS
    if len(argv) > 1:
        return None
    try:
        seconds = float(argv[0])
    except ValueError:
        return None
    return seconds if 0 < seconds < 86400 else None


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and argv[0] == "--version":
        from version import __version__

        print(f"run_backend.py {__version__}")
        return 0
    interval = parse_interval(argv)
    if interval is None:
        print(USAGE, file=sys.stderr)
        return 2
    load_env_file()
    try:
        settings = load_backend_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)

    from backend.account_sync import AccountSync
    from backend.connections import ServiceUnavailable
    from backend.control_plane import ControlPlane
    from backend.listener import LeaderLock, Reconciler, run_listener

    plane = ControlPlane(settings.redis_url, settings.database_url, settings.timing.offline_after, check_redis=False)
    try:
        sessions = plane.sessions
    except ServiceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 69
    except ConfigError as error:  # a schema upgrade that needs a setting (SECRET_KEY)
        print(f"config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    redis, dispatcher = plane.redis, plane.dispatcher
    accounts = AccountSync(dispatcher, lease_wait=settings.timing.offline_after + 5, cooldown=max(3 * interval, 15.0))
    operations, plugins = plane.operations, plane.plugins
    reconciler = Reconciler(
        redis,
        sessions,
        settings.timing.offline_after,
        accounts,
        retention_days=settings.event_retention_days,
        after_scan=[operations.reconcile, plugins.restore_mirror],
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
            print(f"error: cannot serve metrics on {settings.metrics_listen}: {error}", file=sys.stderr)
            return 69
        probe = RoundTripProbe(metrics, redis, dispatcher, settings.timing.offline_after)
        threading.Thread(target=probe.run, args=(stop,), name="roundtrip-probe", daemon=True).start()
    run_listener(reconciler, LeaderLock(redis), interval, stop, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
