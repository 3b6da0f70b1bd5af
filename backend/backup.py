"""Backups of the control plane's database, and restores from them (`run_cli.py backup` / `restore`).

A backup is every table of the live schema (read by reflection, so tables later migrations add come along
unnamed), taken in one snapshot, with the Alembic revision it was taken at, written as one encrypted archive
(`backend.backup_format`). The archive's records, one a line: a manifest (format, revision, when, the keyed
fingerprints of SECRET_KEY, and each table's columns, primary key and row count); then for each table in
dependency order a `{"table": name}` line and its rows as arrays in the manifest's column order; then
`{"end": {"rows": total}}`.

The secrets in the tables (sessions, API hashes, phone numbers, …) stay the Fernet tokens they are under
SECRET_KEY: an archive is useless without that key, and restoring needs it. The manifest names the key by a
fingerprint (an HKDF output of it, which says nothing of the key), and a restore into an install whose
SECRET_KEY lists no key of that fingerprint is refused; listed but not first, the restore goes on and
`run_cli.py rekey` moves the secrets to the first key.

A restore reads the archive through once, checking every part, before it changes anything: a wrong
passphrase, a damaged or truncated file is refused with the database untouched. It then brings the schema to
the archive's revision (migrating up, or, when the database is newer or holds another history, dropping and
building it again), loads every row in one transaction, moves PostgreSQL's sequences past the loaded ids, and
migrates up to this code's head. Into a database that holds rows, it loads only when told how:
`SKIP_EXISTING` keeps every row whose key exists and adds the others, `REPLACE` deletes everything first.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Table, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from backend import backup_schema as schema
from backend.backup_format import ArchiveError, ArchiveSecret, decode_value, encode_value, read_archive, write_archive
from common.crypto import split_keys
from database.engine import SCHEMA_HEAD

log = logging.getLogger(__name__)

ARCHIVE_KIND = "tg-fleet control plane backup"
MANIFEST_FORMAT = 1
BATCH = 1000
SECRETS_NOTE = "secrets in the tables are Fernet tokens under SECRET_KEY; restoring needs the key of this fingerprint"

# (table, rows done so far, rows in all) after each batch of a table
Progress = Callable[[str, int, int], None]


class BackupError(ArchiveError):
    """A backup or restore refused, or a load undone. The message says why and what to do."""


class RestoreMode(enum.Enum):
    EMPTY_ONLY = "empty-only"  # refuse a database that holds rows
    SKIP_EXISTING = "skip-existing"  # keep every row whose key exists, add the others
    REPLACE = "replace"  # delete every row, then load


def key_fingerprints(secret_key: str) -> list[str]:
    """A fingerprint of each key SECRET_KEY lists (the first encrypts): 16 hex digits derived from the key
    by HKDF, which tells keys apart without revealing anything of them."""
    return [
        HKDF(algorithm=hashes.SHA256(), length=8, salt=b"tg-fleet-control-plane", info=b"fleet-backup-key-id-v1")
        .derive(key.encode())
        .hex()
        for key in split_keys(secret_key)
    ]


# ---- backup -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    revision: str
    tables: dict[str, int]
    size: int

    def to_json(self) -> dict[str, object]:
        return {
            "file": str(self.path),
            "revision": self.revision,
            "tables": self.tables,
            "rows": sum(self.tables.values()),
            "bytes": self.size,
        }


def backup(
    engine: Engine,
    out: Path,
    secret: ArchiveSecret,
    secret_key: str,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> BackupSummary:
    """Writes every table of `engine`'s database, read in one snapshot, into a new archive at `out`."""
    with schema.transaction(engine, write=False) as connection:
        revision = schema.stored_revision(connection)
        if revision is None:
            raise BackupError("the database has no schema yet (no Alembic revision): there is nothing to back up")
        tables = schema.data_tables(connection)
        counts = schema.row_counts(connection, tables)
        manifest = {
            "archive": ARCHIVE_KIND,
            "format": MANIFEST_FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "revision": revision,
            "dialect": engine.dialect.name,
            "app_version": _app_version(),
            "secrets": {"scheme": "fernet", "key_fingerprints": key_fingerprints(secret_key), "note": SECRETS_NOTE},
            "tables": [
                {
                    "name": table.name,
                    "columns": [column.name for column in table.columns],
                    "primary_key": [column.name for column in table.primary_key.columns],
                    "rows": counts[table.name],
                }
                for table in tables
            ],
        }
        with write_archive(out, secret, replace=replace) as writer:
            writer.write(manifest)
            for table in tables:
                writer.write({"table": table.name})
                done = 0
                for row in _rows(connection, table):
                    writer.write([encode_value(value) for value in row])
                    done += 1
                    if progress and done % BATCH == 0:
                        progress(table.name, done, counts[table.name])
                if done != counts[table.name]:  # a snapshot does not change under us; this is a bug if it does
                    raise BackupError(f"table {table.name} changed while it was read: take the backup again")
                if progress:
                    progress(table.name, done, counts[table.name])
            writer.write({"end": {"rows": sum(counts.values())}})
    log.info("backup of %d rows in %d tables written at revision %s", sum(counts.values()), len(counts), revision)
    return BackupSummary(Path(out), revision, counts, Path(out).stat().st_size)


def _rows(connection: Connection, table: Table) -> Iterator[Any]:
    order = [table.c[name] for name in schema.key_columns(table)]
    yield from connection.execute(select(table).order_by(*order), execution_options={"yield_per": BATCH})


def _app_version() -> str:
    from version import __version__

    return __version__


# ---- reading an archive -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveTable:
    name: str
    columns: list[str]
    primary_key: list[str]
    rows: int


@dataclass(frozen=True)
class ArchiveInfo:
    """What a whole, checked archive holds."""

    revision: str
    created_at: str
    dialect: str
    app_version: str
    key_fingerprints: list[str]
    tables: list[ArchiveTable]

    @property
    def total(self) -> int:
        return sum(table.rows for table in self.tables)

    def to_json(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "created_at": self.created_at,
            "dialect": self.dialect,
            "app_version": self.app_version,
            "tables": {table.name: table.rows for table in self.tables},
            "rows": self.total,
        }


def _damaged(what: str) -> BackupError:
    return BackupError(f"the archive is damaged: {what}")


def _parse_manifest(record: Any) -> ArchiveInfo:
    if not isinstance(record, dict) or record.get("archive") != ARCHIVE_KIND:
        raise _damaged("it does not start with a manifest")
    if record.get("format") != MANIFEST_FORMAT:
        raise BackupError(
            f"the archive's content is in format {record.get('format')!s:.20}; this version reads {MANIFEST_FORMAT}"
        )
    try:
        return ArchiveInfo(
            revision=str(record["revision"]),
            created_at=str(record["created_at"]),
            dialect=str(record["dialect"]),
            app_version=str(record["app_version"]),
            key_fingerprints=[str(value) for value in record["secrets"]["key_fingerprints"]],
            tables=[
                ArchiveTable(str(t["name"]), [str(c) for c in t["columns"]], list(t["primary_key"]), int(t["rows"]))
                for t in record["tables"]
            ],
        )
    except (KeyError, TypeError, ValueError):
        raise _damaged("its manifest is incomplete") from None


def _tables_of(records: Iterator[Any], info: ArchiveInfo) -> Iterator[tuple[ArchiveTable, Iterator[list[Any]]]]:
    """Each table of the archive with an iterator of its decoded rows, checked against the manifest; the
    caller consumes each table's rows before asking for the next table."""
    pending: list[Any] = []
    for table in info.tables:
        record = pending.pop() if pending else next(records, None)
        if record != {"table": table.name}:
            raise _damaged(f"table {table.name} is not where the manifest says")
        count = 0

        def rows(table: ArchiveTable = table) -> Iterator[list[Any]]:
            nonlocal count
            for record in records:
                if not isinstance(record, list):
                    pending.append(record)
                    return
                if len(record) != len(table.columns):
                    raise _damaged(f"a row of {table.name} has {len(record)} values for {len(table.columns)} columns")
                count += 1
                yield [decode_value(value) for value in record]

        yield table, rows()
        if count != table.rows:
            raise _damaged(f"table {table.name} holds {count} rows where the manifest says {table.rows}")
    end = pending.pop() if pending else next(records, None)
    if not isinstance(end, dict) or not isinstance(end.get("end"), dict) or end["end"].get("rows") != info.total:
        raise _damaged("it does not end where the manifest says")
    if next(records, None) is not None:
        raise _damaged("there is more after its end")


def inspect_archive(path: Path, secret: ArchiveSecret, progress: Progress | None = None) -> ArchiveInfo:
    """Reads the whole archive, checking every part (authentication, structure, row counts), and says what
    it holds. Nothing is written anywhere."""
    records = read_archive(path, secret)
    info = _parse_manifest(next(records, None))
    for table, rows in _tables_of(records, info):
        for done, _row in enumerate(rows, 1):
            if progress and done % BATCH == 0:
                progress(table.name, done, table.rows)
    return info


def check_secret_key(info: ArchiveInfo, secret_key: str) -> list[str]:
    """Refuses an archive whose secrets this install's SECRET_KEY cannot read; returns notes for the
    operator (a key to rotate to, an older key of the archive's install not listed here)."""
    here = key_fingerprints(secret_key)
    if not info.key_fingerprints or info.key_fingerprints[0] not in here:
        raise BackupError(
            "the archive's secrets are encrypted under another SECRET_KEY (its key's fingerprint is "
            f"{info.key_fingerprints[0] if info.key_fingerprints else '?'}, this install's is {here[0]}): set "
            "SECRET_KEY to the key of the install the backup came from; to move to a new key afterwards, list "
            "both (SECRET_KEY=new,old), restore, then run `run_cli.py rekey`"
        )
    notes = []
    if here[0] != info.key_fingerprints[0]:
        notes.append("the archive's secrets are under an older key of SECRET_KEY: run `run_cli.py rekey` next")
    if any(fingerprint not in here for fingerprint in info.key_fingerprints[1:]):
        notes.append(
            "the archive's install also listed an older key this SECRET_KEY does not: secrets still under it "
            "(if `rekey` had not been run there) cannot be read"
        )
    return notes


# ---- restore ------------------------------------------------------------------------------------------------


@dataclass
class RestoreSummary:
    revision: str  # the archive's
    schema: str  # what was done to the schema first: kept, upgraded, rebuilt
    loaded: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # rows already there, left as they were
    deleted: int = 0
    sequences: int = 0
    upgraded_to: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "schema": self.schema,
            "loaded": self.loaded,
            "rows": sum(self.loaded.values()),
            "kept": sum(self.kept.values()),
            "deleted": self.deleted,
            "sequences_reset": self.sequences,
            "upgraded_to": self.upgraded_to,
        }


def plan_schema(info: ArchiveInfo, target: schema.TargetState, mode: RestoreMode) -> str:
    """`kept`, `upgraded` or `rebuilt`: what a restore does to the database's schema before loading; or a
    refusal. Checked before anything changes."""
    if not schema.known_revision(info.revision):
        raise BackupError(
            f"the archive was taken at schema revision {info.revision}, which this code does not know (it "
            f"is newer than {SCHEMA_HEAD}): restore it with the version of the code that wrote it, or newer"
        )
    if not target.empty and mode is RestoreMode.EMPTY_ONLY:
        raise BackupError(
            f"the database is not empty ({target.total} rows in "
            f"{sum(1 for n in target.rows.values() if n)} tables): pass --merge skip-existing to add only the "
            "rows it lacks, or --replace to delete everything in it and load the archive"
        )
    if target.revision == info.revision:
        return "kept"
    if target.revision is None:
        if target.has_tables:
            raise BackupError("the database has tables but no Alembic revision: it is not a database of this fleet")
        return "upgraded"
    if not schema.known_revision(target.revision):
        raise BackupError(
            f"the database is at schema revision {target.revision}, which this code does not know: "
            "restore with the code that upgraded it"
        )
    if schema.is_ancestor(target.revision, info.revision):
        return "upgraded"
    if mode is RestoreMode.SKIP_EXISTING and not target.empty:
        raise BackupError(
            f"the database is at schema revision {target.revision}, newer than the archive's {info.revision}: "
            "a merge needs the same schema; restore into an empty database, or use --replace"
        )
    return "rebuilt"


def restore(
    engine: Engine,
    path: Path,
    secret: ArchiveSecret,
    info: ArchiveInfo,
    mode: RestoreMode = RestoreMode.EMPTY_ONLY,
    *,
    progress: Progress | None = None,
) -> RestoreSummary:
    """Loads the archive at `path` (already checked whole by `inspect_archive`) into `engine`'s database."""
    target = schema.inspect_target(engine)
    summary = RestoreSummary(info.revision, plan_schema(info, target, mode))
    kept = _kept_rows(engine)  # the audit log as it stands: no restore takes it away
    if summary.schema == "rebuilt":
        log.info("dropping the schema at %s to build it again at %s", target.revision, info.revision)
        summary.deleted = target.total
        schema.drop_schema(engine)
    if summary.schema != "kept":
        schema.upgrade(engine, info.revision)
    with schema.transaction(engine, write=True) as connection:
        tables = {table.name: table for table in schema.data_tables(connection)}
        _check_columns(info, tables)
        if mode is RestoreMode.REPLACE and summary.schema != "rebuilt":
            for table in reversed(list(tables.values())):
                if table.name not in schema.KEPT_TABLES:
                    summary.deleted += connection.execute(table.delete()).rowcount or 0
        records = read_archive(path, secret)
        _parse_manifest(next(records, None))
        for entry, rows in _tables_of(records, info):
            table = tables[entry.name]
            summary.loaded[entry.name], summary.kept[entry.name] = 0, 0
            for batch in _batches(rows, entry.columns):
                merge = mode is RestoreMode.SKIP_EXISTING or table.name in schema.KEPT_TABLES
                fresh = _without_existing(connection, table, batch) if merge else batch
                _insert(connection, table, fresh)
                summary.loaded[entry.name] += len(fresh)
                summary.kept[entry.name] += len(batch) - len(fresh)
                if progress:
                    progress(entry.name, summary.loaded[entry.name] + summary.kept[entry.name], entry.rows)
        summary.sequences = schema.reset_sequences(connection, list(tables.values()))
    if info.revision != SCHEMA_HEAD:
        schema.upgrade(engine)
        summary.upgraded_to = SCHEMA_HEAD
    _put_back(engine, kept)
    log.info("restored %d rows at revision %s", sum(summary.loaded.values()), info.revision)
    return summary


def _kept_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """The rows of the tables a restore keeps (`backup_schema.KEPT_TABLES`), read before anything changes."""
    with schema.transaction(engine, write=False) as connection:
        tables = [t for t in schema.data_tables(connection) if t.name in schema.KEPT_TABLES]
        return {t.name: [dict(row._mapping) for row in connection.execute(t.select())] for t in tables}


def _put_back(engine: Engine, kept: dict[str, list[dict[str, Any]]]) -> None:
    """Add the kept rows the restored database lacks (by key): a rebuilt schema dropped them, a merge kept them."""
    if not any(kept.values()):
        return
    with schema.transaction(engine, write=True) as connection:
        tables = {t.name: t for t in schema.data_tables(connection) if t.name in kept}
        for name, rows in kept.items():
            if name in tables:
                for start in range(0, len(rows), BATCH):
                    _insert(
                        connection,
                        tables[name],
                        _without_existing(connection, tables[name], rows[start : start + BATCH]),
                    )
        schema.reset_sequences(connection, list(tables.values()))


def _check_columns(info: ArchiveInfo, tables: dict[str, Table]) -> None:
    for entry in info.tables:
        if entry.name not in tables:
            raise BackupError(f"the archive holds table {entry.name}, which the schema at {info.revision} lacks")
        missing = [name for name in entry.columns if name not in tables[entry.name].c]
        if missing:
            raise BackupError(f"the archive's table {entry.name} has columns the schema lacks: {', '.join(missing)}")


def _batches(rows: Iterator[list[Any]], columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(dict(zip(columns, row, strict=True)))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _without_existing(connection: Connection, table: Table, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = schema.key_columns(table)
    columns = [table.c[name] for name in names]
    keys = [tuple(row[name] for name in names) for row in batch]
    where = columns[0].in_([key[0] for key in keys]) if len(columns) == 1 else tuple_(*columns).in_(keys)
    existing = {tuple(row) for row in connection.execute(select(*columns).where(where))}
    return [row for row, key in zip(batch, keys, strict=True) if key not in existing]


def _insert(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    try:
        connection.execute(table.insert(), rows)
    except IntegrityError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else "a constraint"
        # A constraint's message may quote the values; only the table and the kind of conflict are told.
        kind = "a unique value" if "unique" in reason.lower() or "duplicate" in reason.lower() else "a constraint"
        raise BackupError(
            f"rows of table {table.name} conflict with {kind} of the database's rows; the load was undone"
        ) from None
