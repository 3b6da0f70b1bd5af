"""Settings from the environment and `.env`: typed, validated, loaded per process.

Each entry point asks only for what it needs: `load_worker_settings()` never reads TG_BOT_TOKEN, the CLI
never needs SECRET_KEY until it handles a secret. A missing or malformed value raises `ConfigError`, whose
message is one line naming the variable and what is expected; entry points print it and exit with
`EXIT_CONFIG` (`EXIT_UNAVAILABLE` when a service they need cannot be reached). Nothing is read at import
time, so importing any module never needs a `.env`.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common.validation import has_unsafe_characters, is_ascii_number

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE: Redis, the database or the Bot API cannot be reached
WORKER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # use with fullmatch
DEFAULT_DATABASE_URL = "sqlite:///tg_bot.db"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_BOT_API_SERVER = "https://api.telegram.org"
MIN_SECRET_KEY_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


PROJECT_ROOT = Path(__file__).resolve().parent


def load_env_file(path: str | os.PathLike[str] | None = None) -> None:
    """Load the project's `.env` (beside this file, whatever the working directory; FLEET_ENV_FILE names
    another) without overriding the environment."""
    from dotenv import load_dotenv

    env_path = Path(path) if path else Path(os.environ.get("FLEET_ENV_FILE") or PROJECT_ROOT / ".env")
    if env_path.is_file():
        load_dotenv(env_path, override=False)


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _text(name: str, default: str | None = None) -> str:
    value = _raw(name)
    if value is None:
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    return value


def _positive_number(name: str, default: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}") from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return number


def _positive_int(name: str, default: int, maximum: int) -> int:
    value = _raw(name)
    if value is None:
        return default
    if not is_ascii_number(value) or not 1 <= int(value) <= maximum:
        raise ConfigError(f"{name} must be a whole number from 1 to {maximum}, got {value!r}")
    return int(value)


def _positive_rate(name: str, default: float, maximum: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= maximum:  # also refuses nan
        raise ConfigError(f"{name} must be a number above 0 and at most {maximum:g} (per second), got {value!r}")
    return number


def _url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _text(name, default)
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, got {mask_url(value)!r}"
        )
    return value


def normalize_database_url(url: str) -> str:
    """Use the installed psycopg 3 driver for bare `postgresql://` / `postgres://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def _database_url() -> str:
    value = _text("DATABASE_URL", DEFAULT_DATABASE_URL)
    scheme = urlsplit(value).scheme
    if not (scheme.startswith("sqlite") or scheme.startswith("postgres")):
        raise ConfigError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got {mask_url(value)!r}")
    return normalize_database_url(anchored_sqlite_url(value))


def anchored_sqlite_url(url: str) -> str:
    """A relative SQLite path (`sqlite:///tg_bot.db`) made absolute against the project's folder, so every
    process and every shell, whatever its working directory, opens the same file."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path, sep, query = url[len(prefix) :].partition("?")
    if not path or path.startswith("/") or path == ":memory:" or path.startswith("file:"):
        return url
    return f"{prefix}{PROJECT_ROOT / path}{sep}{query}"


def _redis_url() -> str:
    return _url("REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix"))


def _log_level() -> str:
    value = _text("LOG_LEVEL", "INFO").upper()
    if value not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    log_format()  # checked with the level, so a bad LOG_FORMAT stops the process at start like any setting
    return value


def _secret_key() -> str:
    value = _raw("SECRET_KEY")
    if value is None:
        raise ConfigError(
            "SECRET_KEY is not set (it encrypts sessions and API hashes; make one with "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
        )
    keys = [key.strip() for key in value.split(",")]
    for index, key in enumerate(keys):
        if len(key) < MIN_SECRET_KEY_LENGTH:
            which = "SECRET_KEY" if len(keys) == 1 else f"key {index + 1} of SECRET_KEY"
            raise ConfigError(f"{which} must be at least {MIN_SECRET_KEY_LENGTH} characters long, got {len(key)}")
    return value


def _worker_name() -> str:
    value = _text("WORKER_NAME", socket.gethostname())
    if not WORKER_NAME_PATTERN.fullmatch(value):
        raise ConfigError(
            "WORKER_NAME must be 1-64 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


def _worker_address() -> str:
    value = _text("WORKER_ADDRESS", socket.gethostname())
    if not value or len(value) > 255 or any(ch.isspace() for ch in value) or has_unsafe_characters(value):
        raise ConfigError(
            f"WORKER_ADDRESS must be a host name or IP without spaces or control characters, got {value!r}"
        )
    return value


def _admin_ids() -> frozenset[int]:
    value = _text("ADMIN_IDS")
    ids: set[int] = set()
    for part in value.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not is_ascii_number(part):
            raise ConfigError(f"ADMIN_IDS must be comma-separated numeric Telegram user ids, got {part!r}")
        ids.add(int(part))
    if not ids:
        raise ConfigError("ADMIN_IDS must list at least one numeric Telegram user id")
    return frozenset(ids)


def _bot_token(name: str = "TG_BOT_TOKEN") -> str:
    value = _text(name)
    if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]{20,}", value):
        raise ConfigError(f"{name} must look like 123456:ABC-DEF... (the token from @BotFather)")
    return value


@dataclass(frozen=True)
class FleetTiming:
    """How often workers heartbeat and how long silence makes one offline."""

    heartbeat_interval: float
    offline_after: float


def _fleet_timing() -> FleetTiming:
    heartbeat = _positive_number("HEARTBEAT_INTERVAL", 15.0)
    offline_after = _positive_number("WORKER_OFFLINE_AFTER", 60.0)
    if offline_after <= heartbeat:
        raise ConfigError(
            f"WORKER_OFFLINE_AFTER ({offline_after:g}) must be longer than HEARTBEAT_INTERVAL ({heartbeat:g})"
        )
    return FleetTiming(heartbeat, offline_after)


@dataclass(frozen=True)
class MTProtoEndpoint:
    """A custom MTProto data centre (Telegram test servers or a self-hosted server)."""

    dc_id: int
    host: str
    port: int
    public_key_file: str | None


def _mtproto_endpoint() -> MTProtoEndpoint | None:
    value = _raw("TG_MTPROTO_DC")
    if value is None:
        return None
    match = re.fullmatch(r"(\d{1,3})@([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", value)
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ConfigError(f"TG_MTPROTO_DC must look like 2@127.0.0.1:4430 (dc id @ host : port), got {value!r}")
    key_file = _raw("TG_MTPROTO_PUBKEY")
    if key_file is not None and not Path(key_file).is_file():
        raise ConfigError(f"TG_MTPROTO_PUBKEY must name a readable PEM file, got {key_file!r}")
    return MTProtoEndpoint(int(match.group(1)), match.group(2).strip("[]"), int(match.group(3)), key_file)


@dataclass(frozen=True)
class WorkerSettings:
    """What `run_worker.py` needs: Redis, its identity, timing, threads and the secret key."""

    redis_url: str
    worker_name: str
    worker_address: str
    timing: FleetTiming
    worker_threads: int
    secret_key: str
    log_level: str
    mtproto: MTProtoEndpoint | None
    client_factory: str | None = None  # tests and benchmarks: `module:callable` instead of Telethon
    connects_per_second: float = 20.0  # how fast this worker's clients may dial Telegram (a token bucket)
    operations: int = 16  # account operations (check, 2fa, …) running at once on this worker
    plugins_dir: str | None = None  # the operator's plugins (besides `fleet.plugins` entry points)
    plugin_block_seconds: float = 1.0  # a plugin holding its event loop longer than this is reported


@dataclass(frozen=True)
class BackendSettings:
    """What `run_backend.py` needs: the database, Redis, fleet timing and how long to keep history."""

    database_url: str
    redis_url: str
    timing: FleetTiming
    log_level: str
    event_retention_days: float = 30.0
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


def load_worker_settings() -> WorkerSettings:
    name = _worker_name()
    return WorkerSettings(
        redis_url=_redis_url(),
        worker_name=name,
        worker_address=_worker_address(),
        timing=_fleet_timing(),
        worker_threads=_positive_int("WORKER_THREADS", 4, 64),
        secret_key=_secret_key(),
        log_level=_log_level(),
        mtproto=_mtproto_endpoint(),
        client_factory=_raw("FLEET_CLIENT_FACTORY"),
        connects_per_second=_positive_rate("WORKER_CONNECTS_PER_SECOND", 20.0, 10_000),
        operations=_positive_int("WORKER_OPERATIONS", 16, 256),
        plugins_dir=plugins_dir(),
        plugin_block_seconds=_positive_number("PLUGIN_BLOCK_SECONDS", 1.0),
    )


def plugins_dir() -> str | None:
    """PLUGINS_DIR: a directory of the operator's plugins (None when not set)."""
    path = _raw("PLUGINS_DIR")
    if path is None:
        return None
    if not os.path.isdir(path):
        raise ConfigError(f"PLUGINS_DIR={path!r} is not a directory")
    return os.path.abspath(path)


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


def load_board_limits() -> BoardLimits:
    words = tuple(w.strip().lower() for w in _text("BOARD_STOP_WORDS", "").split(",") if w.strip())
    return BoardLimits(
        ad_days=_positive_int("BOARD_AD_DAYS", 30, 3650),
        invites_per_day=_positive_int("BOARD_INVITES_PER_DAY", 10, 10_000),
        ads_per_user=_positive_int("BOARD_ADS_PER_USER", 3, 1000),
        hide_after_reports=_positive_int("BOARD_HIDE_AFTER_REPORTS", 3, 1000),
        history_days=_positive_int("BOARD_HISTORY_DAYS", 30, 3650),
        stop_words=words,
        reports_per_day=_positive_int("BOARD_REPORTS_PER_DAY", 10, 10_000),
    )


def load_board_settings() -> BoardSettings:
    webapp = _text("BOARD_WEBAPP_URL", "")
    if webapp and urlsplit(webapp).scheme not in ("https", "http"):
        raise ConfigError(f"BOARD_WEBAPP_URL must be the https:// address Telegram opens, got {webapp!r}")
    listen = _text("BOARD_LISTEN", "127.0.0.1:8081")
    port = listen.rpartition(":")[2]
    if not is_ascii_number(port) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"BOARD_LISTEN must be HOST:PORT, e.g. 127.0.0.1:8081, got {listen!r}")
    return BoardSettings(
        bot_token=_bot_token("BOARD_BOT_TOKEN"),
        webapp_url=webapp.rstrip("/"),
        listen=listen,
        api_server=_url("TG_API_SERVER", DEFAULT_BOT_API_SERVER, ("http", "https")).rstrip("/"),
        database_url=_database_url(),
        redis_url=_redis_url(),
        secret_key=_secret_key(),
        log_level=_log_level(),
        limits=load_board_limits(),
        send_rate=_positive_rate("BOARD_SEND_RATE", 30.0, 1000.0),
    )


def load_backend_settings() -> BackendSettings:
    return BackendSettings(
        database_url=_database_url(),
        redis_url=_redis_url(),
        timing=_fleet_timing(),
        log_level=_log_level(),
        event_retention_days=_retention_days(),
        metrics_listen=_host_port("METRICS_LISTEN", None),
    )


def _host_port(name: str, default: str | None) -> str | None:
    value = _raw(name) or default
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not host or not is_ascii_number(port) or not 1 <= int(port) <= 65535 or has_unsafe_characters(value):
        raise ConfigError(f"{name} must be HOST:PORT, e.g. 127.0.0.1:9464, got {value!r}")
    return value


def _retention_days() -> float:
    value = _raw("EVENT_RETENTION_DAYS")
    if value is None:
        return 30.0
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 1 <= int(value) <= 36500:
        raise ConfigError(f"EVENT_RETENTION_DAYS must be a whole number of days from 1 to 36500, got {value!r}")
    return float(value)


def load_cli_settings() -> CliSettings:
    return CliSettings(
        database_url=_database_url(), redis_url=_redis_url(), timing=_fleet_timing(), log_level=_log_level()
    )


def load_secret_key() -> str:
    return _secret_key()


def _listen_address() -> str:
    value = _text("WEBHOOK_LISTEN", "127.0.0.1:8080")
    port = value.rpartition(":")[2]
    if not is_ascii_number(port) or not 1 <= int(port) <= 65535:
        raise ConfigError(f"WEBHOOK_LISTEN must be HOST:PORT, e.g. 0.0.0.0:8080, got {value!r}")
    return value


def load_bot_settings() -> BotSettings:
    webhook = _raw("WEBHOOK_URL")
    if webhook is not None and urlsplit(webhook).scheme != "https":
        raise ConfigError(f"WEBHOOK_URL must be an https:// URL, got {webhook!r}")
    return BotSettings(
        bot_token=_bot_token(),
        admin_ids=_admin_ids(),
        api_server=_url("TG_API_SERVER", DEFAULT_BOT_API_SERVER, ("http", "https")).rstrip("/"),
        webhook_url=webhook,
        webhook_listen=_listen_address(),
        database_url=_database_url(),
        redis_url=_redis_url(),
        timing=_fleet_timing(),
        secret_key=_secret_key(),
        log_level=_log_level(),
    )


class JsonLogFormatter:
    """`LOG_FORMAT=json`: one JSON object per line (time, level, logger, message, and the exception if any)."""

    def format(self, record: object) -> str:
        import json
        import logging

        assert isinstance(record, logging.LogRecord)
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = logging.Formatter().formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def log_format() -> str:
    value = (_raw("LOG_FORMAT") or "text").lower()
    if value not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {value!r}")
    return value


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps (or as JSON lines with LOG_FORMAT=json); secrets never reach loggers."""
    import logging

    if log_format() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())  # type: ignore[arg-type]
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        # celery.app.trace logs every task's return value: results may carry (encrypted) sessions.
        for noisy in ("alembic", "aiogram.event", "telethon", "celery.app.trace"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*superuser privileges.*")
