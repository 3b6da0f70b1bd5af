"""Telethon session formats without Telethon: parse/validate StringSessions, convert `.session` files.

The control plane imports sessions (it never imports Telethon), so the format lives here: a StringSession is
'1' + urlsafe-base64 of `>B{4|16}sH256s` (DC id, IP, port, 256-byte auth key); a Telethon `.session` file is
SQLite with one row in `sessions(dc_id, server_address, port, auth_key, ...)`. Nothing here touches the
network. The other formats (Pyrogram, Telegram Desktop's tdata) and telling them apart: `common.session_formats`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import sqlite3
import stat
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.validation import InvalidValue

VERSION = "1"
AUTH_KEY_BYTES = 256
MAX_SESSION_FILE_BYTES = 5 * 1024 * 1024
MAX_SIDECAR_BYTES = 64 * 1024


@dataclass(frozen=True)
class SessionData:
    dc_id: int
    server_address: str
    port: int
    auth_key: bytes = field(repr=False)  # a credential: never in a repr, a log line or a test's diff

    def to_string(self) -> str:
        ip = ipaddress.ip_address(self.server_address).packed
        packed = struct.pack(f">B{len(ip)}sH{AUTH_KEY_BYTES}s", self.dc_id, ip, self.port, self.auth_key)
        return VERSION + base64.urlsafe_b64encode(packed).decode("ascii")


def parse_string_session(text: str) -> SessionData:
    """Validate a Telethon StringSession; raise InvalidValue saying what is wrong."""
    value = str(text).strip()
    if not value:
        raise InvalidValue("the session string is empty")
    if value[0] != VERSION:
        raise InvalidValue("not a Telethon session string (it should start with 1); Pyrogram strings are not supported")
    try:
        body = value[1:]
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue("the session string is not valid base64") from None
    if len(raw) == 1 + 4 + 2 + AUTH_KEY_BYTES:
        ip_len = 4
    elif len(raw) == 1 + 16 + 2 + AUTH_KEY_BYTES:
        ip_len = 16
    else:
        raise InvalidValue("the session string has the wrong length: is it complete?")
    dc_id, ip, port, key = struct.unpack(f">B{ip_len}sH{AUTH_KEY_BYTES}s", raw)
    return check_session_data(SessionData(dc_id, str(ipaddress.ip_address(ip)), port, key))


def check_session_data(data: SessionData) -> SessionData:
    """`data` if it can be a logged-in session (a possible data centre and port, a non-zero 256-byte key)."""
    if not 1 <= data.dc_id <= 1000:
        raise InvalidValue(f"the session names an impossible data centre ({data.dc_id})")
    if not 1 <= data.port <= 65535:
        raise InvalidValue(f"the session names an impossible port ({data.port})")
    if len(data.auth_key) != AUTH_KEY_BYTES or not any(data.auth_key):
        raise InvalidValue("the session has no authorization key: it was never logged in")
    return data


def read_small_file(path: Path, limit: int = MAX_SESSION_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or InvalidValue saying why not.

    Checked before anything is read, and never blocking: a folder, a FIFO or a device named `*.session` is
    refused, and so is a 2 GB file, without reading it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InvalidValue("no such file") from None
    except PermissionError:
        raise InvalidValue("cannot be read: permission denied") from None
    except OSError as error:
        raise InvalidValue(f"cannot be read: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidValue("is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidValue("is not a regular file (a FIFO, socket or device)")
        if info.st_size > limit:
            raise InvalidValue(f"is too large ({info.st_size:,} bytes; at most {limit:,})")
        with os.fdopen(os.dup(fd), "rb") as handle:
            content = handle.read(limit + 1)
    except OSError as error:
        raise InvalidValue(f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(content) > limit:  # it grew while we looked
        raise InvalidValue(f"is too large (more than {limit:,} bytes)")
    return content


def session_file_to_string(content: bytes) -> str:
    """Convert the bytes of a Telethon `.session` (SQLite) file into a StringSession."""
    if len(content) > MAX_SESSION_FILE_BYTES:
        raise InvalidValue("the .session file is too large to be a Telethon session")
    if not content.startswith(b"SQLite format 3\x00"):
        raise InvalidValue("not a Telethon .session file (it is not an SQLite database)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "import.session"
        path.write_bytes(content)
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(sessions)")}
            if not columns:
                raise InvalidValue("not a Telethon .session file (no sessions table)")
            if "server_address" not in columns:
                raise InvalidValue("this looks like a Pyrogram session; only Telethon .session files are supported")
            rows = connection.execute(
                "SELECT dc_id, server_address, port, auth_key FROM sessions WHERE auth_key IS NOT NULL"
            ).fetchall()
        except sqlite3.DatabaseError:
            raise InvalidValue("the .session file is damaged or not a Telethon session") from None
        finally:
            connection.close()
    if not rows:
        raise InvalidValue("the .session file holds no authorization key: it was never logged in")
    dc_id, address, port, key = rows[0]
    if isinstance(key, str):
        raise InvalidValue(
            "the .session file stores its authorization key as text, not bytes: it is damaged or was converted"
        )
    if not isinstance(key, bytes | memoryview) or not any(bytes(key)) or not address:
        raise InvalidValue("the .session file holds no authorization key: it was never logged in")
    try:
        data = SessionData(int(dc_id), str(ipaddress.ip_address(address)), int(port), bytes(key))
    except (TypeError, ValueError, OverflowError):
        raise InvalidValue("the .session file has a malformed data centre, server address or port") from None
    return check_session_data(data).to_string()
