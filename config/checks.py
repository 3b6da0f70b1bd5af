"""The checks behind each variable (config.environment uses them as pydantic validators).

Most raise a bare ValueError: the field's description then says what is expected. A few word their own
message (a secret is never echoed) and raise `ConfigError`.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from common.redis_target import parse_sentinels
from common.validation import has_unsafe_characters, is_ascii_number
from config.base import MIN_SECRET_KEY_LENGTH, ConfigError, anchored_sqlite_url, normalize_database_url

if TYPE_CHECKING:
    from pydantic import ValidationInfo

# ---- checks with no words of their own: a ValueError, and the field's description says what is expected ---


def as_float(value: object) -> object:
    """Python's `float()` spellings, as ever (`1e3`, `1_000`); the bounds are the field's."""
    return float(value) if isinstance(value, str) else value


def digits(longest: int) -> Callable[[object], object]:
    """Only ASCII digits, at most `longest` of them (pydantic alone would take `+5`, `5.0` or `1_0`)."""
    pattern = re.compile(f"[0-9]{{1,{longest}}}")

    def check(value: object) -> object:
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError("not a whole number")
        return value

    return check


def keep_if(ok: Callable[[str], object]) -> Callable[[str], str]:
    """A validator that keeps a value for which `ok` is true."""

    def check(value: str) -> str:
        if not ok(value):
            raise ValueError("refused")
        return value

    return check


def has_port(value: str) -> bool:
    port = value.rpartition(":")[2]
    return is_ascii_number(port) and 1 <= int(port) <= 65535


def is_host_port(value: str) -> bool:
    return bool(value.rpartition(":")[0]) and has_port(value) and not has_unsafe_characters(value)


def is_address(value: str) -> bool:
    return 0 < len(value) <= 255 and not any(ch.isspace() for ch in value) and not has_unsafe_characters(value)


def database_url(value: str) -> str:
    if not urlsplit(value).scheme.startswith(("sqlite", "postgres")):
        raise ValueError("not a database URL")
    return normalize_database_url(anchored_sqlite_url(value))


def mtproto_dc(value: object) -> object:
    """`2@127.0.0.1:4430` as (dc id, host, port)."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"(\d{1,3})@([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", value)
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ValueError("not an endpoint")
    return int(match.group(1)), match.group(2).strip("[]"), int(match.group(3))


def pem_file(value: str, info: "ValidationInfo") -> str:
    """Checked only when TG_MTPROTO_DC (validated before it) is set: it is not used otherwise."""
    if info.data.get("TG_MTPROTO_DC") is not None and not Path(value).is_file():
        raise ValueError("no such file")
    return value


def words(value: object) -> object:
    """`Casino, SPAM` as ("casino", "spam")."""
    if not isinstance(value, str):
        return value
    return tuple(word.strip().lower() for word in value.split(",") if word.strip())


# ---- checks that word their own message ----------------------------------------------------------------


def secret_key(value: str) -> str:
    """One key, or several comma-separated while rotating them; each long enough (its length is shown)."""
    keys = [key.strip() for key in value.split(",")]
    for index, key in enumerate(keys):
        if len(key) < MIN_SECRET_KEY_LENGTH:
            which = "SECRET_KEY" if len(keys) == 1 else f"key {index + 1} of SECRET_KEY"
            raise ConfigError(f"{which} must be at least {MIN_SECRET_KEY_LENGTH} characters long, got {len(key)}")
    return value


def bot_token(value: str, info: "ValidationInfo") -> str:
    """TG_BOT_TOKEN or BOARD_BOT_TOKEN; never shown back."""
    if not re.fullmatch(r"[0-9]+:[A-Za-z0-9_-]{20,}", value):
        raise ConfigError(f"{info.field_name} must look like 123456:ABC-DEF... (the token from @BotFather)")
    return value


def admin_ids(value: object) -> object:
    """`1, 2; 3` as a set of ids; the message shows the part that is not a number."""
    if not isinstance(value, str):
        return value
    parts = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    for part in parts:
        if not is_ascii_number(part):
            raise ConfigError(f"ADMIN_IDS must be comma-separated numeric Telegram user ids, got {part!r}")
    if not parts:
        raise ConfigError("ADMIN_IDS must list at least one numeric Telegram user id")
    return frozenset(int(part) for part in parts)


def sentinels(value: object) -> object:
    """`10.0.0.5:26379, 10.0.0.6:26379` as ((host, port), ...); the message shows the part that is not one."""
    if not isinstance(value, str):
        return value
    try:
        return parse_sentinels(value)
    except ValueError as error:
        part = str(error)
        shown = "***" if "@" in part else part
        raise ConfigError(
            "REDIS_SENTINELS must be sentinel addresses as host:port separated by commas "
            f"(e.g. 10.0.0.5:26379,10.0.0.6:26379), got {shown!r}"
        ) from None


def plugins_dir(value: str) -> str:
    if not os.path.isdir(value):
        raise ConfigError(f"PLUGINS_DIR={value!r} is not a directory")
    return os.path.abspath(value)
