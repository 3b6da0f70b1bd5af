"""Configuration: each process loads only what it needs; bad values stop it with one line naming the variable."""

from __future__ import annotations

import pytest

from config import (
    PROJECT_ROOT,
    ConfigError,
    load_backend_settings,
    load_bot_settings,
    load_cli_settings,
    load_worker_settings,
    mask_url,
    normalize_database_url,
)
from tests.support.stack import Stack


def test_defaults_match_the_design(secret_key: str) -> None:
    backend = load_backend_settings()
    assert backend.database_url == f"sqlite:///{PROJECT_ROOT / 'tg_bot.db'}"  # the design's file, in the project
    assert backend.redis_url == "redis://localhost:6379/0"
    assert backend.timing.heartbeat_interval == 15 and backend.timing.offline_after == 60
    worker = load_worker_settings()
    assert worker.worker_name  # the hostname
    assert worker.worker_threads == 4


def test_a_worker_never_needs_the_bot_token(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    monkeypatch.setenv("TG_BOT_TOKEN", "garbage")
    monkeypatch.setenv("ADMIN_IDS", "not-a-number")
    assert load_worker_settings().worker_name


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HEARTBEAT_INTERVAL", "abc", "HEARTBEAT_INTERVAL must be a positive number of seconds, got 'abc'"),
        ("HEARTBEAT_INTERVAL", "-1", "HEARTBEAT_INTERVAL must be a positive number"),
        ("WORKER_OFFLINE_AFTER", "5", "WORKER_OFFLINE_AFTER (5) must be longer than HEARTBEAT_INTERVAL (15)"),
        ("WORKER_THREADS", "zero", "WORKER_THREADS must be a whole number from 1 to 64"),
        ("WORKER_NAME", "bad name!", "WORKER_NAME must be 1-64 characters"),
        ("REDIS_URL", "http://x", "REDIS_URL must be a URL starting with redis://"),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 32 characters long"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("TG_MTPROTO_DC", "nonsense", "TG_MTPROTO_DC must look like 2@127.0.0.1:4430"),
    ],
)
def test_malformed_worker_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, secret_key: str, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_worker_settings()
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [  # optional variables: a bad value says what a good one is, as the others do
        ("METRICS_LISTEN", "nope", "METRICS_LISTEN must be HOST:PORT, e.g. 127.0.0.1:9464, got 'nope'"),
        ("WEBHOOK_URL", "http://x", "WEBHOOK_URL must be a URL starting with https://, got 'http://x'"),
        ("TG_MTPROTO_PUBKEY", "/no/such.pem", "TG_MTPROTO_PUBKEY must name a readable PEM file, got '/no/such.pem'"),
    ],
)
def test_a_bad_optional_value_says_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, secret_key: str, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("TG_BOT_TOKEN", "123456:" + "A" * 35)
    monkeypatch.setenv("ADMIN_IDS", "12")
    monkeypatch.setenv("TG_MTPROTO_DC", "2@127.0.0.1:4430")
    monkeypatch.setenv(variable, value)
    load = {"METRICS_LISTEN": load_backend_settings, "WEBHOOK_URL": load_bot_settings}.get(
        variable, load_worker_settings
    )
    with pytest.raises(ConfigError) as error:
        load()
    assert str(error.value) == expected


def test_a_worker_needs_no_secret_key() -> None:
    # Its secrets come sealed to its own key (backend.sealing); SECRET_KEY stays on the control host.
    assert load_worker_settings().secret_key is None


def test_the_cli_does_not_need_the_secret_key() -> None:
    assert load_cli_settings().redis_url


def test_bot_settings_validate_token_and_admins(monkeypatch: pytest.MonkeyPatch, secret_key: str) -> None:
    with pytest.raises(ConfigError, match="TG_BOT_TOKEN is not set"):
        load_bot_settings()
    monkeypatch.setenv("TG_BOT_TOKEN", "123456:" + "A" * 35)
    monkeypatch.setenv("ADMIN_IDS", "12, x")
    with pytest.raises(ConfigError, match="ADMIN_IDS must be comma-separated numeric"):
        load_bot_settings()
    monkeypatch.setenv("ADMIN_IDS", "12, 34")
    assert load_bot_settings().admin_ids == frozenset({12, 34})


def test_dotenv_is_read_but_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from config import load_env_file

    (tmp_path / ".env").write_text("WORKER_OFFLINE_AFTER=90\nHEARTBEAT_INTERVAL=20\n")
    monkeypatch.setenv("HEARTBEAT_INTERVAL", "5")
    load_env_file()
    timing = load_cli_settings().timing
    assert (timing.heartbeat_interval, timing.offline_after) == (5, 90)


def test_dotenv_is_the_projects_whatever_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import config
    import config.base

    monkeypatch.delenv("FLEET_ENV_FILE")
    (tmp_path / ".env").write_text("WORKER_OFFLINE_AFTER=77\n")  # in the working directory: not read
    seen: list[object] = []
    monkeypatch.setattr("dotenv.load_dotenv", lambda path, override: seen.append(path))
    monkeypatch.setattr(config.base, "PROJECT_ROOT", tmp_path / "project")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / ".env").write_text("X=1\n")
    config.load_env_file()
    assert seen == [tmp_path / "project" / ".env"]


def test_a_relative_sqlite_path_is_the_projects_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import config

    monkeypatch.setenv("DATABASE_URL", "sqlite:///tg_bot.db")
    assert load_cli_settings().database_url == f"sqlite:///{config.PROJECT_ROOT / 'tg_bot.db'}"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///data/fleet.db?timeout=5")
    assert load_cli_settings().database_url == f"sqlite:///{config.PROJECT_ROOT / 'data/fleet.db'}?timeout=5"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/abs.db")
    assert load_cli_settings().database_url == f"sqlite:///{tmp_path}/abs.db"


def test_urls_are_masked_and_postgres_uses_psycopg() -> None:
    assert mask_url("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"


def test_processes_stop_at_start_with_one_line(stack: Stack) -> None:
    worker = stack.spawn("run_worker.py", env={"HEARTBEAT_INTERVAL": "often"})
    assert worker.wait(30) == 78
    assert (
        stack.log_of(worker).strip()
        == "config error: HEARTBEAT_INTERVAL must be a positive number of seconds, got 'often'"
    )
    backend = stack.spawn("run_backend.py", env={"DATABASE_URL": "mysql://x"})
    assert backend.wait(30) == 78
    assert (
        stack.log_of(backend).strip().startswith("config error: DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    )
    usage = stack.spawn("run_backend.py", "soon")
    assert usage.wait(30) == 2
    assert "usage: run_backend.py [SECONDS]" in stack.log_of(usage)
