"""The settings' foundations: exit codes, `ConfigError`, the project's folder and `.env`, URL helpers."""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

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


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def load_env_file(path: str | os.PathLike[str] | None = None) -> None:
    """Load the project's `.env` (beside this file, whatever the working directory; FLEET_ENV_FILE names
    another) without overriding the environment."""
    from dotenv import load_dotenv

    env_path = Path(path) if path else Path(os.environ.get("FLEET_ENV_FILE") or PROJECT_ROOT / ".env")
    if env_path.is_file():
        load_dotenv(env_path, override=False)


def normalize_database_url(url: str) -> str:
    """Use the installed psycopg 3 driver for bare `postgresql://` / `postgres://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """The URL with any password (in its user part, or an option named like `sentinel_password`) replaced by
    `***`, safe to print or log. A Sentinel target (`redis+sentinel://:pw@h1:p1,h2:p2/...`) is masked too."""
    parts = urlsplit(url)  # raises ValueError where the URL's syntax is broken, as callers expect
    masked = url
    if "@" in parts.netloc:
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
            masked = masked.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if "password" in parts.query:
        options = [f"{key}=***" if "password" in key else pair for pair, key in _options(parts.query)]
        masked = masked.replace(f"?{parts.query}", "?" + "&".join(options), 1)
    return masked


def _options(query: str) -> list[tuple[str, str]]:
    """Each `key=value` of a query, with its key."""
    return [(pair, pair.partition("=")[0]) for pair in query.split("&") if pair]


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
