"""The live schema as backups and restores see it: its tables read by reflection (whatever migrations made, in
dependency order), its Alembic revision and where that stands against the code's, the migrations run to a given
revision, the whole schema dropped, and PostgreSQL's sequences set past the ids a restore wrote.

Left out of the tables: `alembic_version` (the archive records the revision instead), `api_app_claims` (the
places logins in progress hold in the app pool: they expire within minutes, and restored they would count against
an app's cap before its accounts are loaded) and, on SQLite, virtual tables with their shadow tables (the board's
FTS5 index, which its triggers rebuild as rows are loaded).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Integer, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from database.engine import MIGRATIONS_DIR, SCHEMA_HEAD

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

VERSION_TABLE = "alembic_version"
TRANSIENT_TABLES = frozenset({"api_app_claims"})
# Tables a restore never takes away: the audit log is kept through it (rows of the archive's log are added where
# their ids are free), and rows of it alone do not make a database "not empty".
KEPT_TABLES = frozenset({"audit_log"})


# ---- tables -------------------------------------------------------------------------------------------------


def _virtual_tables(connection: Connection) -> list[str]:
    if connection.dialect.name != "sqlite":
        return []
    rows = connection.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")
    )
    return [row[0] for row in rows]


def data_tables(connection: Connection) -> list[Table]:
    """Every table of the live schema that holds data of ours, parents before children."""
    virtual = _virtual_tables(connection)

    def keep(name: str, _metadata: MetaData) -> bool:
        if name == VERSION_TABLE or name in TRANSIENT_TABLES:
            return False
        return not any(name == v or name.startswith(f"{v}_") for v in virtual)

    metadata = MetaData()
    metadata.reflect(connection, only=keep)
    return list(metadata.sorted_tables)


def key_columns(table: Table) -> list[str]:
    """What tells a row from another: the primary key, or every column of a table without one."""
    return [column.name for column in (table.primary_key.columns or table.columns)]


def row_counts(connection: Connection, tables: list[Table]) -> dict[str, int]:
    return {table.name: connection.execute(select(func.count()).select_from(table)).scalar_one() for table in tables}


@contextlib.contextmanager
def transaction(engine: Engine, write: bool) -> Iterator[Connection]:
    """One transaction on one connection: a snapshot to read from (REPEATABLE READ on PostgreSQL), or a
    write that holds SQLite's write lock from its start. Committed if the block ends without an error."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # pysqlite would begin only at the first write; an explicit BEGIN makes every read see one snapshot.
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        else:
            if not write:
                connection.execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
            if not write:
                connection.execute(text("SET TRANSACTION READ ONLY"))
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


# ---- revisions ----------------------------------------------------------------------------------------------


def stored_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def known_revision(revision: str) -> bool:
    """Whether this code's migrations include `revision` (an archive from newer code is not)."""
    from alembic.util import CommandError

    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def is_ancestor(older: str, newer: str) -> bool:
    """Whether upgrading from `older` reaches `newer` (true when they are equal)."""
    return older in {script.revision for script in _scripts().iterate_revisions(newer, "base")}


def upgrade(engine: Engine, revision: str = SCHEMA_HEAD) -> None:
    """Runs the migrations up to `revision` (`head`: this code's newest) on `engine`."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


# ---- changes ------------------------------------------------------------------------------------------------


def drop_schema(engine: Engine) -> None:
    """Drops every table (with its triggers, indexes and sequences) and view of the live schema, the
    Alembic version table included: what is left is an empty database for the migrations to build again."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            for kind in ("trigger", "view"):
                rows = connection.execute(text("SELECT name FROM sqlite_master WHERE type = :kind"), {"kind": kind})
                for (name,) in list(rows):
                    connection.execute(text(f'DROP {kind.upper()} IF EXISTS "{name}"'))
            for name in _virtual_tables(connection):
                connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            metadata = MetaData()
            metadata.reflect(connection)
            metadata.drop_all(connection)
            return
        inspector, quote = inspect(connection), connection.dialect.identifier_preparer.quote
        for name in inspector.get_view_names():
            connection.execute(text(f"DROP VIEW IF EXISTS {quote(name)} CASCADE"))
        for name in inspector.get_table_names():
            connection.execute(text(f"DROP TABLE IF EXISTS {quote(name)} CASCADE"))


def reset_sequences(connection: Connection, tables: list[Table]) -> int:
    """On PostgreSQL, moves each serial or identity column's sequence past the largest id its table holds
    (rows were written with explicit ids, which sequences do not see); returns how many were moved."""
    if connection.dialect.name != "postgresql":
        return 0
    quote = connection.dialect.identifier_preparer
    moved = 0
    for table in tables:
        for column in table.columns:
            if not isinstance(column.type, Integer):
                continue
            sequence = connection.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": quote.format_table(table), "column": column.name},
            ).scalar()
            if sequence is None:
                continue
            name = quote.quote(column.name)
            connection.execute(
                text(
                    f"SELECT setval(CAST(:sequence AS regclass), COALESCE(MAX({name}), 1), MAX({name}) IS NOT NULL)"
                    f" FROM {quote.format_table(table)}"
                ),
                {"sequence": sequence},
            )
            moved += 1
    return moved


@dataclass(frozen=True)
class TargetState:
    """What a database holds before a restore: its revision, its tables' row counts, whether it has tables."""

    revision: str | None
    rows: dict[str, int]
    has_tables: bool

    @property
    def empty(self) -> bool:
        return not self.total

    @property
    def total(self) -> int:
        return sum(n for name, n in self.rows.items() if name not in KEPT_TABLES)


def inspect_target(engine: Engine) -> TargetState:
    with transaction(engine, write=False) as connection:
        tables = data_tables(connection)
        return TargetState(
            revision=stored_revision(connection),
            rows=row_counts(connection, tables),
            has_tables=bool(inspect(connection).get_table_names()),
        )
