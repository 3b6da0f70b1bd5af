"""`.session` files are SQLite databases, Telethon's and Pyrogram's alike: open one from its bytes (in memory,
read only, never touching the original or a journal beside it), tell whose it is, and build one as bytes."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from common.session_formats.model import SessionFormat
from common.validation import InvalidValue

SQLITE_MAGIC = b"SQLite format 3\x00"
# Columns only Pyrogram/Kurigram's `sessions` table has, and tables only Telethon's file has.
PYROGRAM_COLUMNS = frozenset({"api_id", "test_mode", "user_id", "is_bot", "date"})
TELETHON_TABLES = frozenset({"entities", "sent_files"})


def is_sqlite(content: bytes) -> bool:
    return content.startswith(SQLITE_MAGIC)


@contextlib.contextmanager
def opened(content: bytes) -> Iterator[sqlite3.Connection]:
    """A connection to a private in-memory copy of the database in `content`."""
    if not is_sqlite(content):
        raise InvalidValue("not a .session file (it is not an SQLite database)")
    if len(content) > 19 and content[18:20] == b"\x02\x02":
        # A WAL-mode file: its copy in memory reads it as a rollback-journal database (same pages).
        content = content[:18] + b"\x01\x01" + content[20:]
    connection = sqlite3.connect(":memory:")
    try:
        if hasattr(connection, "deserialize"):
            connection.deserialize(content)
            yield connection
        else:  # pragma: no cover - an SQLite built without sqlite3_deserialize
            connection.close()
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "copy.session"
                path.write_bytes(content)
                connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                yield connection
    finally:
        connection.close()


def file_kind(connection: sqlite3.Connection) -> SessionFormat:
    """Whose `.session` file this is, from its tables; InvalidValue if it is neither's."""
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
    except sqlite3.DatabaseError:
        raise InvalidValue("the .session file is damaged (SQLite cannot read it)") from None
    if not columns or "auth_key" not in columns or "dc_id" not in columns:
        raise InvalidValue("an SQLite file, but not a Telethon or Pyrogram session (no sessions table)")
    if columns & PYROGRAM_COLUMNS or "peers" in tables:
        return SessionFormat.PYROGRAM_FILE
    if "server_address" in columns or tables & TELETHON_TABLES:
        return SessionFormat.TELETHON_FILE
    raise InvalidValue("an SQLite file with a sessions table of an unknown kind (neither Telethon's nor Pyrogram's)")


def session_rows(connection: sqlite3.Connection, columns: list[str]) -> list[tuple[object, ...]]:
    """The rows of `sessions` holding an auth key, only the wanted columns it has (the others read as None)."""
    try:
        present = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
        wanted = ", ".join(name if name in present else "NULL" for name in columns)
        return connection.execute(f"SELECT {wanted} FROM sessions WHERE auth_key IS NOT NULL").fetchall()
    except sqlite3.DatabaseError:
        raise InvalidValue("the .session file is damaged (SQLite cannot read it)") from None


def auth_key_of(value: object) -> bytes:
    if isinstance(value, str):
        raise InvalidValue(
            "the .session file stores its authorization key as text, not bytes: it is damaged or was converted"
        )
    if not isinstance(value, bytes | memoryview) or not any(bytes(value)):
        raise InvalidValue("the .session file holds no authorization key: it was never logged in")
    return bytes(value)


def built(fill: Callable[[sqlite3.Connection], None]) -> bytes:
    """The bytes of a new SQLite database that `fill` writes."""
    connection = sqlite3.connect(":memory:")
    try:
        with connection:
            fill(connection)
        if hasattr(connection, "serialize"):
            return connection.serialize()
    finally:
        connection.close()
    with tempfile.TemporaryDirectory() as tmp:  # pragma: no cover - an SQLite built without sqlite3_serialize
        path = Path(tmp) / "new.session"
        connection = sqlite3.connect(path)
        try:
            with connection:
                fill(connection)
        finally:
            connection.close()
        return path.read_bytes()
