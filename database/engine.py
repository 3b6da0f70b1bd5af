"""Engine and session factory for SQLite or PostgreSQL, and the automatic schema upgrade at start.

SQLite gets WAL, a busy timeout and foreign keys on every connection. `ensure_schema` brings the database to
the newest Alembic revision; it checks the stored revision first (one cheap query) so a CLI call on an
up-to-date database never imports Alembic, and it serialises concurrent upgrades (a file lock for SQLite,
an advisory lock for PostgreSQL) so that a backend, a bot and a CLI starting together do not race.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration's revision id; tests check it against the migrations folder.
SCHEMA_HEAD = "0015_plugin_secrets"
_PG_MIGRATION_LOCK_ID = 7_302_113


def create_db_engine(url: str) -> Engine:
    """An engine for `url` with the per-dialect settings this project relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5})


def _use_wal(cursor: Any) -> None:
    """Switch to WAL; the switch needs an exclusive lock and ignores the busy timeout, so retry it briefly."""
    import sqlite3

    for attempt in range(100):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == 99:
                raise
            time.sleep(0.05)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database).resolve().with_name(Path(database).name + ".lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK_ID})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK_ID})
            connection.commit()


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision (a no-op costing one query when it is current)."""
    if current_revision(engine) == SCHEMA_HEAD:
        return
    with _migration_lock(engine):
        if current_revision(engine) == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["engine"] = engine
        log.info("upgrading database schema to %s", SCHEMA_HEAD)
        command.upgrade(config, "head")


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Engine + session factory for `url`, with the schema brought up to date."""
    engine = create_db_engine(url)
    ensure_schema(engine)
    return engine, session_factory(engine)
