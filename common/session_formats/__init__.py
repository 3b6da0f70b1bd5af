"""Sessions in every common format, in and out, as pure codecs (no network, no database, no Telethon unless a
tdata folder is read or written): Telethon's string and `.session` file, Pyrogram/Kurigram's string (both
layouts) and `.session` file, and Telegram Desktop's `tdata` folder.

    detect_format(source)                  # a str is a session string; a Path a file or a tdata folder
    read_sessions(source, fmt=None, passcode=None) -> [PortableSession]   # a tdata or a text file may hold several
    write_session(item, fmt, dest, api_id=None, passcode=None) -> dest    # 0600 files, 0700 folders
    session_to_string(item, fmt)           # the two string formats

Whatever the format, a `PortableSession` holds a `common.sessions.SessionData` (so `.session.to_string()` is
the Telethon string the fleet stores). Every problem is an `InvalidValue` whose message can be shown as is and
never holds key material.
"""

from __future__ import annotations

from pathlib import Path

from common.session_formats import pyrogram, telethon
from common.session_formats.model import (
    KNOWN_API_HASHES,
    TDESKTOP_API_HASH,
    TDESKTOP_API_ID,
    PasscodeRequired,
    PortableSession,
    SessionFormat,
    write_private,
)
from common.session_formats.sqlite_files import file_kind, is_sqlite, opened
from common.session_formats.tdata import read_folder, tdata_root, write_folder
from common.sessions import SessionData, read_small_file
from common.validation import InvalidValue

__all__ = [
    "KNOWN_API_HASHES",
    "TDESKTOP_API_HASH",
    "TDESKTOP_API_ID",
    "PasscodeRequired",
    "PortableSession",
    "SessionData",
    "SessionFormat",
    "detect_format",
    "read_sessions",
    "session_to_string",
    "tdata_root",
    "write_session",
    "write_tdata",
]

FILE_SUFFIXES = (".session", ".txt")  # a folder named so is a misplaced file, not a tdata
NOT_SQLITE = "not a Telethon .session file, nor a Pyrogram one: it is not an SQLite database"
NOT_A_STRING = (
    "not a session string: neither Telethon's (it starts with 1) nor Pyrogram's (263, 267 or 271 bytes "
    "in base64): is it complete?"
)
FILE_READERS = {
    SessionFormat.TELETHON_FILE: telethon.read_database,
    SessionFormat.PYROGRAM_FILE: pyrogram.read_database,
}
LABELS = {SessionFormat.TELETHON_FILE: "Telethon", SessionFormat.PYROGRAM_FILE: "Pyrogram"}
STRING_READERS = {
    SessionFormat.TELETHON_STRING: telethon.read_string,
    SessionFormat.PYROGRAM_STRING: pyrogram.read_string,
}


def detect_format(source: str | Path) -> SessionFormat:
    """The format of a session string (`str`), a file or a tdata folder (`Path`); InvalidValue if none."""
    if isinstance(source, Path):
        if source.is_dir():
            if tdata_root(source) is None:
                raise InvalidValue("a folder, but not a Telegram Desktop tdata folder (no key_datas file in it)")
            return SessionFormat.TDATA
        return _content_format(read_small_file(source), source)
    return _string_format(source)


def read_sessions(
    source: str | Path, fmt: SessionFormat | str | None = None, *, passcode: str | None = None
) -> list[PortableSession]:
    """Every session in `source`: one for a string or a `.session` file; one per line of a text file of
    strings; one per account of a tdata folder (PasscodeRequired if it is locked and `passcode` is missing or
    wrong). `fmt` forces a format instead of detecting it."""
    wanted = SessionFormat(fmt) if fmt else None
    if not isinstance(source, Path):
        if wanted is not None and not wanted.is_string:
            raise InvalidValue(f"a {wanted} session is a file or a folder, not a string: give its path")
        return [_read_string(str(source), wanted)]
    if wanted is SessionFormat.TDATA or (
        wanted is None and source.is_dir() and source.suffix.lower() not in FILE_SUFFIXES
    ):
        return read_folder(source, passcode)
    content = read_small_file(source)
    if wanted is None and (is_sqlite(content) or source.suffix.lower() == ".session"):
        wanted = _content_format(content, source)
    if wanted is not None and not wanted.is_string:
        return [_read_file(content, wanted)]
    if is_sqlite(content):
        raise InvalidValue("this is a .session file, not a text file holding a session string")
    lines = _text_lines(content)
    if not lines:
        raise InvalidValue("the file holds no session string (it is empty)")
    return [_read_string(line, wanted) for line in lines]


def session_to_string(item: PortableSession, fmt: SessionFormat | str, *, api_id: int | None = None) -> str:
    """The session as a Telethon or a Pyrogram string (Pyrogram's records `api_id`, else the item's)."""
    wanted = SessionFormat(fmt)
    if wanted is SessionFormat.TELETHON_STRING:
        return telethon.write_string(item)
    if wanted is SessionFormat.PYROGRAM_STRING:
        return pyrogram.write_string(item, api_id)
    raise InvalidValue(f"{wanted} is not a string format (telethon-string or pyrogram-string)")


def write_session(
    item: PortableSession,
    fmt: SessionFormat | str,
    dest: Path,
    *,
    api_id: int | None = None,
    passcode: str | None = None,
) -> Path:
    """Write `item` at `dest` (never over something there): a one-line text file for the string formats, a
    `.session` file, or a tdata folder (locked with `passcode` if given). Files 0600, folders 0700.

    `api_id` is recorded by Pyrogram's formats (default: the item's own)."""
    wanted = SessionFormat(fmt)
    if wanted is SessionFormat.TDATA:
        return write_folder([item], dest, passcode)
    if passcode:
        raise InvalidValue("only a tdata folder is locked with a local passcode")
    if wanted.is_string:
        content = (session_to_string(item, wanted, api_id=api_id) + "\n").encode("ascii")
    elif wanted is SessionFormat.TELETHON_FILE:
        content = telethon.write_file(item)
    else:
        content = pyrogram.write_file(item, api_id)
    return write_private(dest, content)


def write_tdata(items: list[PortableSession], dest: Path, *, passcode: str | None = None) -> Path:
    """One tdata folder holding several accounts (up to Telegram Desktop's 6), as one install has them."""
    return write_folder(items, dest, passcode)


# ---- detection ------------------------------------------------------------------------------------------


def _string_format(text: str) -> SessionFormat:
    value = str(text).strip()
    if not value:
        raise InvalidValue("the session string is empty")
    if value.startswith("1"):  # Pyrogram's start with the DC id byte: A, B or y, never 1
        return SessionFormat.TELETHON_STRING
    if pyrogram.looks_like_string(pyrogram.decode_string(value)):
        return SessionFormat.PYROGRAM_STRING
    raise InvalidValue(NOT_A_STRING)


def _content_format(content: bytes, path: Path) -> SessionFormat:
    if is_sqlite(content):
        with opened(content) as connection:
            return file_kind(connection)
    if path.suffix.lower() == ".session":
        raise InvalidValue(NOT_SQLITE)
    lines = _text_lines(content)
    if not lines:
        raise InvalidValue("the file holds no session string (it is empty)")
    return _string_format(lines[0])


def _text_lines(content: bytes) -> list[str]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue("neither an SQLite .session file nor a text file holding a session string") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_string(text: str, wanted: SessionFormat | None) -> PortableSession:
    return STRING_READERS[wanted or _string_format(text)](text)


def _read_file(content: bytes, wanted: SessionFormat) -> PortableSession:
    if not is_sqlite(content):
        raise InvalidValue(NOT_SQLITE)
    with opened(content) as connection:
        kind = file_kind(connection)
        if kind is not wanted:
            raise InvalidValue(f"this is a {LABELS[kind]} .session file, not a {LABELS[wanted]} one")
        return FILE_READERS[wanted](connection)
