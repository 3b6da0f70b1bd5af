"""Session import without Telethon on the control plane, checked against Telethon's own session classes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession

from common.sessions import parse_string_session, session_file_to_string
from common.validation import InvalidValue

AUTH_KEY = bytes(range(256))


def _telethon_string(dc: int = 2, ip: str = "127.0.0.1", port: int = 443) -> str:
    session = StringSession()
    session.set_dc(dc, ip, port)
    session.auth_key = AuthKey(AUTH_KEY)
    return session.save()


def test_parses_what_telethon_writes_and_writes_what_telethon_reads() -> None:
    original = _telethon_string(4, "127.0.0.1", 4430)
    data = parse_string_session(original)
    assert (data.dc_id, data.server_address, data.port, data.auth_key) == (4, "127.0.0.1", 4430, AUTH_KEY)
    assert data.to_string() == original
    again = StringSession(data.to_string())
    assert (again.dc_id, again.server_address, again.port, again.auth_key.key) == (4, "127.0.0.1", 4430, AUTH_KEY)
    ipv6 = parse_string_session(_telethon_string(2, "::1", 443))
    assert ipv6.server_address == "::1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("2AAAA", "should start with 1"),
        ("1!!!!", "not valid base64"),
        ("1" + "QUJD" * 10, "wrong length"),
        (StringSession().save() or "1", "wrong length"),
    ],
)
def test_bad_session_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_string_session(text)


def test_a_session_without_an_auth_key_is_refused() -> None:
    session = StringSession()
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(bytes(256))
    with pytest.raises(InvalidValue, match="never logged in"):
        parse_string_session(session.save())


def test_a_telethon_session_file_converts(tmp_path: Path) -> None:
    path = tmp_path / "79991234567.session"
    file_session = SQLiteSession(str(path))
    file_session.set_dc(2, "127.0.0.1", 443)
    file_session.auth_key = AuthKey(AUTH_KEY)
    file_session.save()
    file_session.close()
    converted = session_file_to_string(path.read_bytes())
    assert converted == _telethon_string(2, "127.0.0.1", 443)


def test_other_files_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="not an SQLite database"):
        session_file_to_string(b"hello")
    pyrogram = tmp_path / "pyro.session"
    connection = sqlite3.connect(pyrogram)
    connection.execute("CREATE TABLE sessions (dc_id INTEGER, api_id INTEGER, test_mode INTEGER, auth_key BLOB)")
    connection.commit()
    connection.close()
    with pytest.raises(InvalidValue, match="Pyrogram"):
        session_file_to_string(pyrogram.read_bytes())
    empty = tmp_path / "empty.session"
    session = SQLiteSession(str(empty))
    session.save()
    session.close()
    with pytest.raises(InvalidValue, match="never logged in"):
        session_file_to_string(empty.read_bytes())
