"""Shared fixtures: the network guard, a real Redis, SQLite and PostgreSQL databases, and the process stack."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from bot.lean_import import import_aiogram
from scripts.embedded_redis import EmbeddedRedis
from tests.netguard.sitecustomize import install as install_netguard
from tests.support.stack import TEST_SECRET_KEY, Stack

# Fixtures of the board's end-to-end tests (the real process: `api`, `service`, `board`) and of its moderation
# tests (`clock`, `make_service`), of its bot in process (`h`) and of the Mini App in Chromium (`browser`, `mini_app`).
pytest_plugins = [
    "tests.support.board_harness",  # first: the others import it
    "tests.support.board_process",
    "tests.support.board_moderation",
    "tests.support.webapp_fixtures",
]

install_netguard()
import_aiogram()  # the bot's tests run on aiogram imported the way run.py imports it

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CONFIG_VARIABLES = (
    "TG_BOT_TOKEN",
    "ADMIN_IDS",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_MASTER_NAME",
    "REDIS_SENTINEL_PASSWORD",
    "TG_API_SERVER",
    "WORKER_NAME",
    "WORKER_ADDRESS",
    "HEARTBEAT_INTERVAL",
    "WORKER_OFFLINE_AFTER",
    "WORKER_THREADS",
    "SECRET_KEY",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_LISTEN",
    "WORKER_CONNECTS_PER_SECOND",
    "EVENT_RETENTION_DAYS",
    "BOARD_BOT_TOKEN",
    "BOARD_WEBAPP_URL",
    "BOARD_LISTEN",
    "BOARD_AD_DAYS",
    "BOARD_ADS_PER_USER",
    "BOARD_INVITES_PER_DAY",
    "BOARD_HIDE_AFTER_REPORTS",
    "BOARD_HISTORY_DAYS",
    "BOARD_STOP_WORDS",
    "BOARD_REPORTS_PER_DAY",
    "BOARD_SEND_RATE",
    "WEBHOOK_URL",
    "TG_MTPROTO_DC",
    "TG_MTPROTO_PUBKEY",
    "PROXY_CHECK_SECONDS",
    "PROXY_SLOW_MS",
    "PROXY_DEAD_AFTER",
    "PROXY_MOVES_PER_SCAN",
)


@pytest.fixture(scope="session")
def netguard_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("netguard") / "violations.log"
    path.touch()
    os.environ["FLEET_NETGUARD_LOG"] = str(path)
    return path


@pytest.fixture(autouse=True)
def _no_outside_traffic(netguard_log: Path) -> Iterator[None]:
    """Fail any test during which this process or a subprocess tried to reach a non-loopback address."""
    before = netguard_log.read_text()
    yield
    attempts = netguard_log.read_text()[len(before) :]
    assert not attempts, f"non-loopback network access attempted:\n{attempts}"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the configuration they set, and no developer's `.env`."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEET_ENV_FILE", str(tmp_path / ".env"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(workdir=str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _postgres_available() -> bool:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return _postgres_available()


def _create_postgres_database() -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"fleet_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool) -> Iterator[str]:
    """Each database test runs against a SQLite file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    if not postgres_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL} in CI")
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
    name, url = _create_postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, sqlite_url: str, netguard_log: Path) -> Iterator[Stack]:
    workdir = tmp_path / "stack"
    workdir.mkdir()
    running = Stack(workdir, redis_url, sqlite_url, netguard_log)
    yield running
    running.shutdown()


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    return TEST_SECRET_KEY


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Any:
    """In-process fake Telegram clients: their per-phone script, and Telegram's state in the test's Redis."""
    from tests.support import fake_telegram
    from tests.test_manager import Script

    monkeypatch.setenv("FAKE_TELEGRAM_SCRIPT", str(tmp_path / "telegram.json"))
    monkeypatch.setenv("FAKE_TELEGRAM_REDIS", redis_url)
    monkeypatch.setattr(fake_telegram, "_redis_client", None)
    return Script(tmp_path / "telegram.json")


@pytest.fixture
def telegram(stack: Stack, tmp_path: Path) -> Any:
    """Workers of this stack talk to the fake Telegram; its per-phone script is the returned object."""
    from tests.test_manager import Script

    script = Script(tmp_path / "telegram.json")
    stack.env.update(
        FLEET_CLIENT_FACTORY="tests.support.fake_telegram:factory",
        FAKE_TELEGRAM_SCRIPT=str(script.path),
        FAKE_TELEGRAM_REDIS=stack.env["REDIS_URL"],
    )
    return script
