"""What each process gets: one frozen dataclass per entry point, loaded from the environment.

`redis_url` is REDIS_URL, or - with REDIS_SENTINELS set - the Sentinel target composed from it
(`redis+sentinel://...`, see common.redis_target, which opens every Redis client from either form)."""

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from config.base import PROJECT_ROOT
from config.environment import read


@dataclass(frozen=True)
class FleetTiming:
    """How often workers heartbeat and how long silence makes one offline."""

    heartbeat_interval: float
    offline_after: float


@dataclass(frozen=True)
class MTProtoEndpoint:
    """A custom MTProto data centre (Telegram test servers or a self-hosted server)."""

    dc_id: int
    host: str
    port: int
    public_key_file: str | None


@dataclass(frozen=True)
class WorkerSettings:
    """What `run_worker.py` needs: Redis, its identity, timing, threads and the secret key."""

    redis_url: str
    worker_name: str
    worker_address: str | None  # None: the address Redis sees the worker connect from
    timing: FleetTiming
    worker_threads: int
    secret_key: str | None  # None: the worker opens only what is sealed to its own key (the way to run it)
    log_level: str
    mtproto: MTProtoEndpoint | None
    client_factory: str | None = None  # tests and benchmarks: `module:callable` instead of Telethon
    connects_per_second: float = 20.0  # how fast this worker's clients may dial Telegram (a token bucket)
    operations: int = 16  # account operations (check, 2fa, …) running at once on this worker
    max_accounts: int = 10_000  # accounts this worker runs at most: it refuses starts beyond (WORKER_MAX_ACCOUNTS)
    plugins_dir: str | None = None  # the operator's plugins (besides `fleet.plugins` entry points)
    plugin_block_seconds: float = 1.0  # a plugin holding its event loop longer than this is reported
    proxy_check_seconds: float = 60.0  # how often the pool proxies its accounts use are checked
    key_file: str = ""  # the worker's private key (common.sealing), made on first start, readable by it only


@dataclass(frozen=True)
class BackendSettings:
    """What `run_backend.py` needs: the database, Redis, fleet timing and how long to keep history."""

    database_url: str
    redis_url: str
    timing: FleetTiming
    log_level: str
    event_retention_days: float = 30.0
    audit_retention_days: float = 365.0  # AUDIT_RETENTION_DAYS: the audit log is kept apart from the events
    metrics_listen: str | None = None  # HOST:PORT for Prometheus' /metrics; off when None


@dataclass(frozen=True)
class CliSettings:
    """What `run_cli.py` needs; the secret key is asked for only by commands that handle secrets."""

    database_url: str
    redis_url: str
    timing: FleetTiming
    log_level: str


@dataclass(frozen=True)
class BotSettings:
    """What `run.py` needs: the bot token, admins, Bot API server, database, Redis and the secret key."""

    bot_token: str
    admin_ids: frozenset[int]
    api_server: str
    webhook_url: str | None
    webhook_listen: str
    database_url: str
    redis_url: str
    timing: FleetTiming
    secret_key: str
    log_level: str
    sandbox: bool = False  # the stack runs against the Telegram sandbox (`make run` sets FLEET_SANDBOX)


@dataclass(frozen=True)
class BoardLimits:
    """The board's rules: how long ads live, how much one person may post and write, when reports hide."""

    ad_days: int = 30
    invites_per_day: int = 10
    ads_per_user: int = 3
    hide_after_reports: int = 3
    history_days: int = 30
    stop_words: tuple[str, ...] = ()
    reports_per_day: int = 10


@dataclass(frozen=True)
class BoardSettings:
    """What `run_board.py` needs: its own bot token, where the Mini App lives, database, Redis, secret key."""

    bot_token: str
    webapp_url: str
    listen: str
    api_server: str
    database_url: str
    redis_url: str
    secret_key: str
    log_level: str
    limits: BoardLimits
    send_rate: float = 30.0  # Bot API messages a second, all chats together (BOARD_SEND_RATE)


def load_worker_settings() -> WorkerSettings:
    env = read("Worker")
    dc = env.TG_MTPROTO_DC
    return WorkerSettings(
        redis_url=env.redis_target,
        worker_name=env.WORKER_NAME,
        worker_address=env.WORKER_ADDRESS,
        timing=FleetTiming(env.HEARTBEAT_INTERVAL, env.WORKER_OFFLINE_AFTER),
        worker_threads=env.WORKER_THREADS,
        secret_key=env.SECRET_KEY,
        log_level=env.LOG_LEVEL,
        mtproto=MTProtoEndpoint(*dc, env.TG_MTPROTO_PUBKEY) if dc else None,
        client_factory=env.FLEET_CLIENT_FACTORY,
        connects_per_second=env.WORKER_CONNECTS_PER_SECOND,
        operations=env.WORKER_OPERATIONS,
        max_accounts=env.WORKER_MAX_ACCOUNTS,
        plugins_dir=env.PLUGINS_DIR,
        plugin_block_seconds=env.PLUGIN_BLOCK_SECONDS,
        proxy_check_seconds=env.PROXY_CHECK_SECONDS,
        key_file=env.WORKER_KEY_FILE or worker_key_file(env.STATE_DIRECTORY, env.WORKER_NAME),
    )


def worker_key_file(state_directory: str | None, worker_name: str) -> str:
    """Where a worker keeps its private key unless WORKER_KEY_FILE says: its state directory (systemd's
    StateDirectory=), else `.local/` of the project it runs from."""
    base = Path(state_directory.split(":")[0]) if state_directory else PROJECT_ROOT / ".local"
    return str(base / f"worker-{worker_name}.key")


def load_backend_settings() -> BackendSettings:
    env = read("Backend")
    return BackendSettings(
        database_url=env.DATABASE_URL,
        redis_url=env.redis_target,
        timing=FleetTiming(env.HEARTBEAT_INTERVAL, env.WORKER_OFFLINE_AFTER),
        log_level=env.LOG_LEVEL,
        event_retention_days=env.EVENT_RETENTION_DAYS,
        audit_retention_days=env.AUDIT_RETENTION_DAYS,
        metrics_listen=env.METRICS_LISTEN,
    )


def load_cli_settings() -> CliSettings:
    env = read("Cli")
    timing = FleetTiming(env.HEARTBEAT_INTERVAL, env.WORKER_OFFLINE_AFTER)
    return CliSettings(
        database_url=env.DATABASE_URL, redis_url=env.redis_target, timing=timing, log_level=env.LOG_LEVEL
    )


def load_bot_settings() -> BotSettings:
    env = read("Bot")
    return BotSettings(
        bot_token=env.TG_BOT_TOKEN,
        admin_ids=env.ADMIN_IDS,
        api_server=env.TG_API_SERVER,
        webhook_url=env.WEBHOOK_URL,
        webhook_listen=env.WEBHOOK_LISTEN,
        database_url=env.DATABASE_URL,
        redis_url=env.redis_target,
        timing=FleetTiming(env.HEARTBEAT_INTERVAL, env.WORKER_OFFLINE_AFTER),
        secret_key=env.SECRET_KEY,
        log_level=env.LOG_LEVEL,
        sandbox=env.FLEET_SANDBOX,
    )


def load_board_settings() -> BoardSettings:
    env = read("Board")
    return BoardSettings(
        bot_token=env.BOARD_BOT_TOKEN,
        webapp_url=env.BOARD_WEBAPP_URL,
        listen=env.BOARD_LISTEN,
        api_server=env.TG_API_SERVER,
        database_url=env.DATABASE_URL,
        redis_url=env.redis_target,
        secret_key=env.SECRET_KEY,
        log_level=env.LOG_LEVEL,
        limits=_board_limits(env),
        send_rate=env.BOARD_SEND_RATE,
    )


def load_board_limits() -> BoardLimits:
    return _board_limits(read("Limits"))


def _board_limits(env: Any) -> BoardLimits:
    """BOARD_AD_DAYS is `ad_days`, and so on for each field."""
    return BoardLimits(**{field.name: getattr(env, f"BOARD_{field.name.upper()}") for field in fields(BoardLimits)})


@dataclass(frozen=True)
class ProxyPolicy:
    """How the backend judges pool proxies from the workers' checks, and how fast it moves accounts off one."""

    check_seconds: float = 60.0  # PROXY_CHECK_SECONDS: workers check proxies in use this often; idle ones too
    slow_ms: float = 1000.0  # PROXY_SLOW_MS: a check slower than this reads `slow`
    dead_after: int = 3  # PROXY_DEAD_AFTER: this many failed checks in a row, and none succeeding, is `dead`
    moves_per_scan: int = 50  # PROXY_MOVES_PER_SCAN: accounts moved off dead proxies per scan, at most


def load_proxy_policy() -> ProxyPolicy:
    env = read("Proxies")
    return ProxyPolicy(env.PROXY_CHECK_SECONDS, env.PROXY_SLOW_MS, env.PROXY_DEAD_AFTER, env.PROXY_MOVES_PER_SCAN)


def read_redis_target() -> str:
    """REDIS_URL, or with REDIS_SENTINELS the Sentinel target (common.redis_target) - what `redis_url` holds in
    every settings group."""
    return str(read("Redis").redis_target)


def load_owner_ids() -> frozenset[int]:
    """ADMIN_IDS (the owners) where it is set, else none: the CLI lists them beside the admins table."""
    return read("Owners").ADMIN_IDS or frozenset()


def load_secret_key() -> str:
    return read("Secret").SECRET_KEY


def plugins_dir() -> str | None:
    """PLUGINS_DIR: a directory of the operator's plugins, made absolute (None when not set)."""
    return read("Plugins").PLUGINS_DIR
