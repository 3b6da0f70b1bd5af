"""The variables: one pydantic-settings model per group; each process reads the groups it needs.

A variable is a field named exactly as the environment spells it, with its default and a description of a
good value. Values are stripped, and a blank one counts as unset. A bad value reads
`NAME must <description>, got 'value'` (a password in it masked); the few checks worded otherwise raise
`ConfigError` themselves. Only the first problem is reported, in one line: never pydantic's multi-line report.
The models are built on first use: importing pydantic-settings costs ~100 ms that `run_cli.py --help`, and
every module importing a constant from `config`, must not pay.
"""

import os
import socket
from functools import cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, Self, get_args
from urllib.parse import urlsplit

from common.redis_target import sentinel_target
from config import checks
from config.base import (
    DEFAULT_BOT_API_SERVER,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    LOG_LEVELS,
    WORKER_NAME_PATTERN,
    ConfigError,
    mask_url,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

_NO_KEY_MESSAGE = (
    "SECRET_KEY is not set (it encrypts sessions and API hashes; make one with "
    '`python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
)


@cache
def _readers() -> SimpleNamespace:
    """The pydantic-settings models, built once, on first use (the module's docstring says why)."""
    from pydantic import AfterValidator, BeforeValidator, Field, model_validator
    from pydantic_settings import BaseSettings, SettingsConfigDict

    def described(kind: Any, description: str, *checks: Any) -> Any:
        """`kind` checked by `checks` (Field constraints and validators); `description` words the error."""
        return Annotated[kind, Field(description=description), *checks]

    def whole(most: int) -> Any:
        return described(
            int, f"be a whole number from 1 to {most}", Field(ge=1, le=most), BeforeValidator(checks.digits(18))
        )

    def rate(most: float) -> Any:
        limits = Field(gt=0, le=most, allow_inf_nan=False)
        return described(
            float, f"be a number above 0 and at most {most:g} (per second)", limits, BeforeValidator(checks.as_float)
        )

    def url(*schemes: str) -> Any:
        starts = " or ".join(f"{scheme}://" for scheme in schemes)
        return described(
            str,
            f"be a URL starting with {starts}",
            AfterValidator(checks.keep_if(lambda v: urlsplit(v).scheme in schemes)),
        )

    def listen(example: str) -> Any:
        return described(str, f"be HOST:PORT, e.g. {example}", AfterValidator(checks.keep_if(checks.has_port)))

    seconds = described(
        float, "be a positive number of seconds", Field(gt=0, allow_inf_nan=False), BeforeValidator(checks.as_float)
    )
    strip_slash = AfterValidator(lambda value: value.rstrip("/"))
    hostname = Field(default_factory=socket.gethostname)

    class Env(BaseSettings):
        """Read from the environment alone (`load_env_file` puts `.env` there), by the exact names; the
        defaults are checked like any value."""

        model_config = SettingsConfigDict(
            case_sensitive=True, enable_decoding=False, validate_default=True, defer_build=True
        )

        @model_validator(mode="before")
        @classmethod
        def _blank_is_unset(cls, data: dict[str, Any]) -> dict[str, Any]:
            stripped = {name: value.strip() if isinstance(value, str) else value for name, value in data.items()}
            return {name: value for name, value in stripped.items() if value != ""}

    class Logs(Env):
        LOG_LEVEL: described(
            str,
            f"be one of {', '.join(LOG_LEVELS)}",
            BeforeValidator(str.upper),
            AfterValidator(checks.keep_if(LOG_LEVELS.__contains__)),
        ) = "INFO"
        LOG_FORMAT: described(
            str,
            "be text or json",
            BeforeValidator(str.lower),
            AfterValidator(checks.keep_if(("text", "json").__contains__)),
        ) = "text"

    class Timing(Env):
        HEARTBEAT_INTERVAL: seconds = 15.0
        WORKER_OFFLINE_AFTER: seconds = 60.0

        @model_validator(mode="after")
        def _offline_after_a_heartbeat(self) -> Self:
            if self.WORKER_OFFLINE_AFTER <= self.HEARTBEAT_INTERVAL:
                raise ConfigError(
                    f"WORKER_OFFLINE_AFTER ({self.WORKER_OFFLINE_AFTER:g}) must be longer than "
                    f"HEARTBEAT_INTERVAL ({self.HEARTBEAT_INTERVAL:g})"
                )
            return self

    class Redis(Env):
        """REDIS_URL alone: one server. With REDIS_SENTINELS: the primary named REDIS_MASTER_NAME, found through
        those sentinels; REDIS_URL then gives only its user, password, db and TLS (`redis_target`)."""

        REDIS_URL: url("redis", "rediss", "unix") = DEFAULT_REDIS_URL
        REDIS_SENTINELS: Annotated[tuple[tuple[str, int], ...], BeforeValidator(checks.sentinels)] | None = None
        REDIS_MASTER_NAME: described(
            str,
            "be 1-64 characters of letters, digits, '.', '_' or '-' (the name the sentinels monitor)",
            AfterValidator(checks.keep_if(WORKER_NAME_PATTERN.fullmatch)),
        ) = "fleet"
        REDIS_SENTINEL_PASSWORD: str | None = None

        @model_validator(mode="after")
        def _sentinels_reach_tcp(self) -> Self:
            if self.REDIS_SENTINELS and urlsplit(self.REDIS_URL).scheme not in ("redis", "rediss"):
                raise ConfigError(
                    "REDIS_URL must be redis:// or rediss:// when REDIS_SENTINELS is set (it gives the password, "
                    f"db and TLS of the primary the sentinels name), got {mask_url(self.REDIS_URL)!r}"
                )
            return self

        @property
        def redis_target(self) -> str:
            """What every Redis client opens (common.redis_target): REDIS_URL, or the Sentinel target."""
            if not self.REDIS_SENTINELS:
                return self.REDIS_URL
            return sentinel_target(
                self.REDIS_URL, self.REDIS_SENTINELS, self.REDIS_MASTER_NAME, self.REDIS_SENTINEL_PASSWORD
            )

    class Stores(Redis):
        DATABASE_URL: described(str, "be a sqlite:/// or postgresql:// URL", AfterValidator(checks.database_url)) = (
            DEFAULT_DATABASE_URL
        )

    class Secret(Env):
        SECRET_KEY: Annotated[str, AfterValidator(checks.secret_key)]

    class OptionalSecret(Env):
        # A worker's secrets come sealed to its own key (backend.sealing); SECRET_KEY only for a control plane
        # that does not seal yet (no SECRET_KEY on its backend), or a spec from before device identities.
        SECRET_KEY: Annotated[str, AfterValidator(checks.secret_key)] | None = None

    class Plugins(Env):
        PLUGINS_DIR: Annotated[str, AfterValidator(checks.plugins_dir)] | None = None

    class ProxyChecks(Env):
        PROXY_CHECK_SECONDS: seconds = 60.0

    class Proxies(ProxyChecks):
        PROXY_SLOW_MS: described(
            float,
            "be a positive number of milliseconds",
            Field(gt=0, allow_inf_nan=False),
            BeforeValidator(checks.as_float),
        ) = 1000.0
        PROXY_DEAD_AFTER: whole(1000) = 3
        PROXY_MOVES_PER_SCAN: whole(100_000) = 50

    class BotApi(Env):
        TG_API_SERVER: Annotated[url("http", "https"), strip_slash] = DEFAULT_BOT_API_SERVER

    class Limits(Env):
        BOARD_AD_DAYS: whole(3650) = 30
        BOARD_INVITES_PER_DAY: whole(10_000) = 10
        BOARD_ADS_PER_USER: whole(1000) = 3
        BOARD_HIDE_AFTER_REPORTS: whole(1000) = 3
        BOARD_HISTORY_DAYS: whole(3650) = 30
        BOARD_STOP_WORDS: Annotated[tuple[str, ...], BeforeValidator(checks.words)] = ()
        BOARD_REPORTS_PER_DAY: whole(10_000) = 10

    # A model checks its bases' fields first, the last base's first of all.
    class Cli(Logs, Timing, Stores):
        pass

    class Owners(Env):
        ADMIN_IDS: Annotated[frozenset[int], BeforeValidator(checks.admin_ids)] | None = None

    class Backend(Cli):
        EVENT_RETENTION_DAYS: described(
            float, "be a whole number of days from 1 to 36500", Field(ge=1, le=36500), BeforeValidator(checks.digits(5))
        ) = 30.0
        AUDIT_RETENTION_DAYS: described(
            float, "be a whole number of days from 1 to 36500", Field(ge=1, le=36500), BeforeValidator(checks.digits(5))
        ) = 365.0
        METRICS_LISTEN: (
            described(str, "be HOST:PORT, e.g. 127.0.0.1:9464", AfterValidator(checks.keep_if(checks.is_host_port)))
            | None
        ) = None

    class Worker(ProxyChecks, Plugins, OptionalSecret, Logs, Timing, Redis):
        WORKER_NAME: described(
            str,
            "be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
            AfterValidator(checks.keep_if(WORKER_NAME_PATTERN.fullmatch)),
        ) = hostname
        WORKER_ADDRESS: (
            described(
                str,
                "be a host name or IP without spaces or control characters",
                AfterValidator(checks.keep_if(checks.is_address)),
            )
            | None
        ) = None  # unset: the address Redis sees the worker connect from (worker/address.py)
        WORKER_THREADS: whole(64) = 4
        TG_MTPROTO_DC: described(
            tuple[int, str, int] | None,
            "look like 2@127.0.0.1:4430 (dc id @ host : port)",
            BeforeValidator(checks.mtproto_dc),
        ) = None
        TG_MTPROTO_PUBKEY: described(str, "name a readable PEM file", AfterValidator(checks.pem_file)) | None = None
        FLEET_CLIENT_FACTORY: str | None = None
        WORKER_CONNECTS_PER_SECOND: rate(10_000) = 20.0
        WORKER_OPERATIONS: whole(256) = 16
        WORKER_MAX_ACCOUNTS: whole(1_000_000) = 10_000  # bench/real_scale.py: 10,000 within every bar
        PLUGIN_BLOCK_SECONDS: seconds = 1.0
        WORKER_KEY_FILE: str | None = None  # unset: worker-<WORKER_NAME>.key in $STATE_DIRECTORY or .local/
        STATE_DIRECTORY: str | None = None  # systemd's StateDirectory= sets it

    class Bot(Secret, Cli, BotApi):
        TG_BOT_TOKEN: Annotated[str, AfterValidator(checks.bot_token)]
        ADMIN_IDS: Annotated[frozenset[int], BeforeValidator(checks.admin_ids)]
        WEBHOOK_URL: url("https") | None = None
        WEBHOOK_LISTEN: listen("0.0.0.0:8080") = "127.0.0.1:8080"
        FLEET_SANDBOX: bool = False  # set by `make run` in sandbox mode: the bot's header says so

    class Board(Secret, Limits, Logs, Stores, BotApi):
        BOARD_BOT_TOKEN: Annotated[str, AfterValidator(checks.bot_token)]
        BOARD_WEBAPP_URL: described(
            str,
            "be the https:// address Telegram opens",
            AfterValidator(checks.keep_if(lambda v: not v or urlsplit(v).scheme in ("https", "http"))),
            strip_slash,
        ) = ""
        BOARD_LISTEN: listen("127.0.0.1:8081") = "127.0.0.1:8081"
        BOARD_SEND_RATE: rate(1000) = 30.0

    models = (Logs, Redis, Secret, Plugins, Limits, Proxies, Owners, Cli, Backend, Worker, Bot, Board)
    return SimpleNamespace(**{model.__name__: model for model in models})


def read(group: str) -> Any:
    """One group of variables from the environment; a bad value raises ConfigError in one line."""
    from pydantic import ValidationError

    model = getattr(_readers(), group)
    try:
        return model()
    except ValidationError as error:
        raise _one_line(error, model) from None


def _one_line(error: "ValidationError", model: Any) -> ConfigError:
    """Pydantic's report (every problem, over several lines) as one line about the first problem."""
    first = error.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    name = str(first["loc"][0])
    if first["type"] == "missing":
        return ConfigError(_NO_KEY_MESSAGE if name == "SECRET_KEY" else f"{name} is not set")
    # What was written (normalised as the setting normalises it), not a number pydantic parsed from it.
    value = first["input"] if isinstance(first["input"], str) else os.environ.get(name, "").strip()
    try:
        shown = mask_url(value)
    except ValueError:  # not even a URL's syntax: show it unless it may hold a password
        shown = "***" if "@" in value else value
    return ConfigError(f"{name} must {_description(model.model_fields[name])}, got {shown!r}")


def _description(field: Any) -> str:
    """What a good value is: the field's own description or, for an optional one (`described(...) | None`),
    the description inside the union."""
    if field.description:
        return str(field.description)
    for member in get_args(field.annotation):
        for metadata in getattr(member, "__metadata__", ()):
            if getattr(metadata, "description", None):
                return str(metadata.description)
    return "be a valid value"
