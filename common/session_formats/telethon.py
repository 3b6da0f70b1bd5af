"""Telethon's formats: the StringSession ('1' + urlsafe base64 of `>B{4|16}sH256s`, `common.sessions`) and the
`.session` SQLite file, read and written without Telethon. Written files use Telethon's schema version 7, which
every Telethon 1.x reads (newer ones upgrade it in place)."""

from __future__ import annotations

import ipaddress
import sqlite3

from common.session_formats.model import PortableSession, is_test_address
from common.session_formats.sqlite_files import auth_key_of, built, opened, session_rows
from common.sessions import SessionData, check_session_data, parse_string_session
from common.validation import InvalidValue

SCHEMA_VERSION = 7
SCHEMA = (
    "CREATE TABLE version (version integer primary key)",
    "CREATE TABLE sessions (dc_id integer primary key, server_address text, port integer, auth_key blob,"
    " takeout_id integer)",
    "CREATE TABLE entities (id integer primary key, hash integer not null, username text, phone integer,"
    " name text, date integer)",
    "CREATE TABLE sent_files (md5_digest blob, file_size integer, type integer, id integer, hash integer,"
    " primary key(md5_digest, file_size, type))",
    "CREATE TABLE update_state (id integer primary key, pts integer, qts integer, date integer, seq integer)",
)


def _portable(data: SessionData) -> PortableSession:
    return PortableSession(data, test_mode=is_test_address(data.server_address))


def read_string(text: str) -> PortableSession:
    return _portable(parse_string_session(text))


def write_string(item: PortableSession) -> str:
    return item.session.to_string()


def read_file(content: bytes) -> PortableSession:
    """The session in the bytes of a Telethon `.session` file (the first row that holds an auth key)."""
    with opened(content) as connection:
        return read_database(connection)


def read_database(connection: sqlite3.Connection) -> PortableSession:
    rows = session_rows(connection, ["dc_id", "server_address", "port", "auth_key"])
    if not rows:
        raise InvalidValue("the .session file holds no authorization key: it was never logged in")
    dc_id, address, port, key = rows[0]
    key = auth_key_of(key)
    if not address:
        raise InvalidValue("the .session file holds no server address: it is damaged")
    try:
        data = SessionData(int(dc_id), str(ipaddress.ip_address(address)), int(port), key)  # type: ignore[call-overload, arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidValue("the .session file has a malformed data centre, server address or port") from None
    return _portable(check_session_data(data))


def write_file(item: PortableSession) -> bytes:
    data = item.session

    def fill(connection: sqlite3.Connection) -> None:
        for statement in SCHEMA:
            connection.execute(statement)
        connection.execute("INSERT INTO version VALUES (?)", (SCHEMA_VERSION,))
        connection.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, NULL)",
            (data.dc_id, data.server_address, data.port, data.auth_key),
        )

    return built(fill)
