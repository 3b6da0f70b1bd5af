"""The database on SQLite and PostgreSQL: automatic schema, migrations, and the operations module."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from database.engine import (
    MIGRATIONS_DIR,
    SCHEMA_HEAD,
    create_db_engine,
    current_revision,
    ensure_schema,
    open_database,
)
from database.errors import WorkerExists, WorkerNotFound, WorkerStillOnline
from database.events import recent_events
from database.models import Worker
from database.workers import add_worker, find_worker, get_worker, list_workers, remove_worker, set_worker_active


def test_schema_head_matches_the_newest_migration() -> None:
    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text()
        revisions.add(re.search(r'^revision = "([^"]+)"', source, re.M).group(1))  # type: ignore[union-attr]
        down = re.search(r"^down_revision = (None|\"([^\"]+)\")", source, re.M)
        if down and down.group(2):
            parents.add(down.group(2))
    assert revisions - parents == {SCHEMA_HEAD}


def test_schema_is_created_on_first_open_and_upgrade_is_idempotent(database_url: str) -> None:
    engine, _sessions = open_database(database_url)
    assert current_revision(engine) == SCHEMA_HEAD
    assert {"workers", "fleet_events"} <= set(inspect(engine).get_table_names())
    ensure_schema(engine)  # a second start changes nothing
    assert current_revision(engine) == SCHEMA_HEAD


def test_concurrent_first_starts_do_not_race(database_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            ensure_schema(create_db_engine(database_url))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert current_revision(create_db_engine(database_url)) == SCHEMA_HEAD


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_worker_operations_and_their_events(database_url: str) -> None:
    _engine, sessions = open_database(database_url)
    with sessions.begin() as session:
        add_worker(session, "srv1", "10.0.0.1", "cli:test")
    with sessions.begin() as session, pytest.raises(WorkerExists):
        add_worker(session, "srv1", "10.0.0.2", "cli:test")
    with sessions.begin() as session:
        assert set_worker_active(session, "srv1", False, "cli:test") is True
        assert set_worker_active(session, "srv1", False, "cli:test") is False
    with sessions() as session:
        assert [w.name for w in list_workers(session, active_only=True)] == []
        kinds = [e.kind for e in recent_events(session, "srv1")]
        assert kinds == ["worker.deactivated", "worker.added"]
    with sessions.begin() as session, pytest.raises(WorkerStillOnline):
        remove_worker(session, "srv1", "cli:test", is_online=True)
    with sessions.begin() as session:
        remove_worker(session, "srv1", "cli:test", is_online=False)
    with sessions() as session:
        assert find_worker(session, "srv1") is None
        assert recent_events(session, "srv1")[0].kind == "worker.removed"
    with sessions() as session, pytest.raises(WorkerNotFound, match="worker 'ghost' not found"):
        get_worker(session, "ghost")


def test_times_round_trip_as_aware_utc(database_url: str) -> None:
    _engine, sessions = open_database(database_url)
    moment = datetime(2026, 11, 21, 5, 0, 0, 123456, tzinfo=UTC)
    with sessions.begin() as session:
        session.add(Worker(name="t", address="a", last_heartbeat=moment))
    with sessions() as session:
        stored = get_worker(session, "t").last_heartbeat
    assert stored == moment and stored.tzinfo is not None


def test_the_migrations_build_exactly_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from database.board_models import is_modelled  # the board's tables share the metadata
    from database.models import Base

    engine, _sessions = open_database(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": is_modelled})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def _upgrade_to(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    command.upgrade(config, revision)


def test_upgrading_encrypts_the_phone_numbers_stored_in_clear(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.crypto import SecretBox
    from config import ConfigError

    engine = create_db_engine(database_url)
    _upgrade_to(engine, "0003_event_history")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (phone, api_id, api_hash_enc, worker_id, desired_state, status, status_detail,"
                " created_at, updated_at) VALUES ('+79991234567', 1, 'h', NULL, 'stopped', 'stopped', '',"
                " '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
            )
        )
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"encrypts the 1 stored phone number\(s\), which needs SECRET_KEY"):
        ensure_schema(engine)
    assert current_revision(engine) == "0003_event_history"  # nothing half-done
    key = "upgrade-secret-key-0123456789abcdefghijkl"
    monkeypatch.setenv("SECRET_KEY", key)
    ensure_schema(engine)
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as connection:
        row = connection.execute(text("SELECT phone_enc, phone_lookup, phone_masked FROM accounts")).one()
        columns = {column["name"] for column in inspect(connection).get_columns("accounts")}
    box = SecretBox(key)
    assert box.decrypt(row.phone_enc) == "+79991234567"
    assert row.phone_lookup == box.lookup("+79991234567") and row.phone_masked == "+7 *** ***-45-67"
    assert "phone" not in columns
