"""Pyrogram's (and its fork Kurigram's) formats, read and written without Pyrogram.

A string session is urlsafe base64 without padding of one of three layouts (pyrogram/storage/storage.py):
the current `>BI?256sQ?` (dc id, api id, test mode, auth key, user id, is bot: 271 bytes) and the older
`>B?256sI?` and `>B?256sQ?` (no api id; a 32- or 64-bit user id: 263 and 267 bytes). A `.session` file is
SQLite with one row in `sessions(dc_id, api_id, test_mode, auth_key, date, user_id, is_bot)` (Kurigram's
schema 7 adds server_address and port), plus `peers` and `version`. We write Pyrogram 2's schema 3, which
Pyrogram 2 reads as is and Kurigram upgrades in place.

Pyrogram records only a DC id: the address is Telegram's for that DC (`model.dc_session`). A bot's session is
refused: the fleet runs user accounts.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
import struct
import time

from common.session_formats.model import PortableSession, dc_session
from common.session_formats.sqlite_files import auth_key_of, built, opened, session_rows
from common.validation import InvalidValue

LAYOUT = ">BI?256sQ?"  # Pyrogram 2 / Kurigram: SESSION_STRING_FORMAT
OLD_LAYOUT = ">B?256sI?"  # Pyrogram 1: OLD_SESSION_STRING_FORMAT (32-bit user id)
OLD_LAYOUT_64 = ">B?256sQ?"  # Pyrogram 1: OLD_SESSION_STRING_FORMAT_64
LAYOUTS = {struct.calcsize(layout): layout for layout in (LAYOUT, OLD_LAYOUT, OLD_LAYOUT_64)}
BOOL_OFFSETS = {LAYOUT: (5, 270), OLD_LAYOUT: (1, 262), OLD_LAYOUT_64: (1, 266)}  # test_mode, is_bot
SCHEMA_VERSION = 3
SCHEMA = (
    "CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER, auth_key BLOB,"
    " date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER)",
    "CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL, username TEXT,"
    " phone_number TEXT, last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER)))",
    "CREATE TABLE version (number INTEGER PRIMARY KEY)",
    "CREATE INDEX idx_peers_id ON peers (id)",
    "CREATE INDEX idx_peers_username ON peers (username)",
    "CREATE INDEX idx_peers_phone_number ON peers (phone_number)",
    "CREATE TRIGGER trg_peers_last_update_on AFTER UPDATE ON peers BEGIN UPDATE peers"
    " SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER) WHERE id = NEW.id; END",
)
BOT_REFUSED = "this is a bot's session: the fleet runs user accounts"


def decode_string(text: str) -> bytes:
    """The raw bytes of a Pyrogram string session (padding and the standard alphabet tolerated)."""
    body = str(text).strip().translate(str.maketrans("+/", "-_")).rstrip("=")
    if not body:
        raise InvalidValue("the session string is empty")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue("the session string is not valid base64") from None


def looks_like_string(raw: bytes) -> bool:
    """Whether decoded bytes have one of Pyrogram's layouts (its length, and 0 or 1 in the flag bytes)."""
    layout = LAYOUTS.get(len(raw))
    return layout is not None and all(raw[offset] in (0, 1) for offset in BOOL_OFFSETS[layout])


def read_string(text: str) -> PortableSession:
    raw = decode_string(text)
    if not looks_like_string(raw):
        raise InvalidValue(
            f"not a Pyrogram session string ({len(raw)} bytes; Pyrogram's hold 263, 267 or 271): is it complete?"
        )
    layout = LAYOUTS[len(raw)]
    if layout == LAYOUT:
        dc_id, api_id, test_mode, key, user_id, is_bot = struct.unpack(layout, raw)
    else:
        dc_id, test_mode, key, user_id, is_bot = struct.unpack(layout, raw)
        api_id = None
    if is_bot:
        raise InvalidValue(BOT_REFUSED, "session_bot")
    return PortableSession(dc_session(dc_id, key, test_mode), user_id or None, api_id or None, bool(test_mode))


def _required(item: PortableSession, api_id: int | None) -> tuple[int, int]:
    api = api_id if api_id is not None else item.api_id
    if not api:
        raise InvalidValue("a Pyrogram session records the API ID it was authorised with: none is known")
    if not item.user_id:
        raise InvalidValue(
            "a Pyrogram session records the account's Telegram user id, and it is not known yet "
            "(start the account once so the fleet learns it)"
        )
    return int(api), int(item.user_id)


def write_string(item: PortableSession, api_id: int | None = None) -> str:
    """The current layout, as Pyrogram's `export_session_string` writes it."""
    api, user_id = _required(item, api_id)
    data = item.session
    packed = struct.pack(LAYOUT, data.dc_id, api, item.test_mode, data.auth_key, user_id, False)
    return base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def read_file(content: bytes) -> PortableSession:
    with opened(content) as connection:
        return read_database(connection)


def read_database(connection: sqlite3.Connection) -> PortableSession:
    columns = ["dc_id", "api_id", "test_mode", "auth_key", "user_id", "is_bot", "server_address", "port"]
    rows = session_rows(connection, columns)
    if not rows:
        raise InvalidValue("the .session file holds no authorization key: it was never logged in")
    dc_id, api_id, test_mode, key, user_id, is_bot, address, port = rows[0]
    if is_bot:
        raise InvalidValue(BOT_REFUSED, "session_bot")
    key = auth_key_of(key)
    try:
        numbers = [None if value is None else int(value) for value in (dc_id, user_id, api_id, port)]  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise InvalidValue("the .session file has a malformed data centre, user id, API ID or port") from None
    dc, user, api, port_number = numbers
    if dc is None:
        raise InvalidValue("the .session file names no data centre: it is damaged")
    session = dc_session(dc, key, bool(test_mode), str(address) if address else None, port_number)
    return PortableSession(session, user or None, api or None, bool(test_mode))


def write_file(item: PortableSession, api_id: int | None = None) -> bytes:
    api, user_id = _required(item, api_id)
    data = item.session

    def fill(connection: sqlite3.Connection) -> None:
        for statement in SCHEMA:
            connection.execute(statement)
        connection.execute("INSERT INTO version VALUES (?)", (SCHEMA_VERSION,))
        connection.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (data.dc_id, api, int(item.test_mode), data.auth_key, int(time.time()), user_id, 0),
        )

    return built(fill)
