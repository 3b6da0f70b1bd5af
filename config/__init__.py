"""Settings from the environment and `.env`: typed, validated, loaded per process.

Each entry point asks only for what it needs: `load_worker_settings()` never reads TG_BOT_TOKEN, the CLI
never needs SECRET_KEY until it handles a secret. A missing or malformed value raises `ConfigError`, whose
message is one line naming the variable and what is expected; entry points print it and exit with
`EXIT_CONFIG` (`EXIT_UNAVAILABLE` when a service they need cannot be reached). Nothing is read at import
time, so importing any module never needs a `.env`.

Import from `config` itself; inside, `config.base` holds the exit codes, `ConfigError` and URL helpers,
`config.checks` each variable's check, `config.environment` the pydantic-settings models that read the
variables, `config.settings` the frozen dataclasses each process gets (`load_*_settings()`), and
`config.logs` the logging set-up.
"""

from config.base import (
    DEFAULT_BOT_API_SERVER,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    LOG_LEVELS,
    MIN_SECRET_KEY_LENGTH,
    PROJECT_ROOT,
    WORKER_NAME_PATTERN,
    ConfigError,
    anchored_sqlite_url,
    load_env_file,
    mask_url,
    normalize_database_url,
)
from config.logs import JsonLogFormatter, configure_logging, log_format
from config.settings import (
    BackendSettings,
    BoardLimits,
    BoardSettings,
    BotSettings,
    CliSettings,
    FleetTiming,
    MTProtoEndpoint,
    ProxyPolicy,
    WorkerSettings,
    load_backend_settings,
    load_board_limits,
    load_board_settings,
    load_bot_settings,
    load_cli_settings,
    load_owner_ids,
    load_proxy_policy,
    load_secret_key,
    load_worker_settings,
    plugins_dir,
    read_redis_target,
)

__all__ = [
    "DEFAULT_BOT_API_SERVER",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REDIS_URL",
    "EXIT_CONFIG",
    "EXIT_UNAVAILABLE",
    "LOG_LEVELS",
    "MIN_SECRET_KEY_LENGTH",
    "PROJECT_ROOT",
    "WORKER_NAME_PATTERN",
    "BackendSettings",
    "BoardLimits",
    "BoardSettings",
    "BotSettings",
    "CliSettings",
    "ConfigError",
    "FleetTiming",
    "JsonLogFormatter",
    "MTProtoEndpoint",
    "ProxyPolicy",
    "WorkerSettings",
    "anchored_sqlite_url",
    "configure_logging",
    "load_backend_settings",
    "load_board_limits",
    "load_board_settings",
    "load_bot_settings",
    "load_cli_settings",
    "load_env_file",
    "load_owner_ids",
    "load_proxy_policy",
    "load_secret_key",
    "load_worker_settings",
    "log_format",
    "mask_url",
    "normalize_database_url",
    "plugins_dir",
    "read_redis_target",
]
