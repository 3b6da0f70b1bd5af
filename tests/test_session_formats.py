"""Every session format in and out (`common.session_formats`), checked against what the real libraries write and
read: Telethon's own session classes, Pyrogram's layouts packed as its source packs them (struct formats and
SQL schemas of pyrogram/storage), and tdata folders written by opentele-ng itself."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession

from common.session_formats import (
    TDESKTOP_API_HASH,
    TDESKTOP_API_ID,
    PasscodeRequired,
    PortableSession,
    SessionData,
    SessionFormat,
    detect_format,
    read_sessions,
    session_to_string,
    write_session,
    write_tdata,
)
from common.validation import InvalidValue
from tests.support.stack import ROOT

KEY = bytes(range(256))
OTHER_KEY = bytes(range(255, -1, -1))
USER_ID = 5_000_000_123
PROD_DC2 = "149.154.167.51"
ITEM = PortableSession(SessionData(2, PROD_DC2, 443, KEY), user_id=USER_ID, api_id=12345)

# pyrogram/storage/storage.py
PYROGRAM_LAYOUT, PYROGRAM_OLD, PYROGRAM_OLD_64 = ">BI?256sQ?", ">B?256sI?", ">B?256sQ?"
# pyrogram/storage/sqlite_storage.py, Pyrogram 2 (schema 3) and Kurigram (schema 7)
PYROGRAM_SESSIONS = (
    "CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER, auth_key BLOB,"
    " date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER)"
)
KURIGRAM_SESSIONS = (
    "CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER, api_id INTEGER,"
    " test_mode INTEGER, auth_key BLOB, date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER)"
)
PEERS = "CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL, phone_number TEXT)"


def pyrogram_string(layout: str, *values: object) -> str:
    """As Pyrogram's export_session_string: urlsafe base64 of the packed layout, padding stripped."""
    return base64.urlsafe_b64encode(struct.pack(layout, *values)).decode().rstrip("=")


def pyrogram_unpack(text: str, layout: str) -> tuple[object, ...]:
    """As Pyrogram's SQLiteStorage.open reads a session string."""
    return struct.unpack(layout, base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def telethon_string(dc: int = 2, ip: str = PROD_DC2, port: int = 443, key: bytes = KEY) -> str:
    session = StringSession()
    session.set_dc(dc, ip, port)
    session.auth_key = AuthKey(key)
    return session.save()


def telethon_file(path: Path, dc: int = 2, ip: str = PROD_DC2, key: bytes = KEY) -> Path:
    session = SQLiteSession(str(path))
    session.set_dc(dc, ip, 443)
    session.auth_key = AuthKey(key)
    session.save()
    session.close()
    return path


def pyrogram_file(path: Path, schema: str = PYROGRAM_SESSIONS, version: int = 3, **row: object) -> Path:
    values = {"dc_id": 2, "api_id": 12345, "test_mode": 0, "auth_key": KEY, "date": 0, "user_id": USER_ID}
    values.update({"is_bot": 0, **row})
    with sqlite3.connect(path) as connection:
        connection.execute(schema)
        connection.execute(PEERS)
        connection.execute("CREATE TABLE version (number INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO version VALUES (?)", (version,))
        columns = [c[1] for c in connection.execute("PRAGMA table_info(sessions)")]
        present = [c for c in columns if c in values]
        marks = ", ".join("?" for _ in present)
        connection.execute(
            f"INSERT INTO sessions ({', '.join(present)}) VALUES ({marks})", [values[c] for c in present]
        )
    connection.close()
    return path


def opentele_tdata(path: Path, accounts: list[tuple[int, bytes, int]], passcode: str | None = None) -> Path:
    """A tdata folder written by opentele-ng's own API (FromTelethon with the current session: no network)."""
    from opentele.api import API, UseCurrentSession
    from opentele.td import Account, TDesktop
    from opentele.tl import TelegramClient

    def client(dc: int, key: bytes, user_id: int) -> TelegramClient:
        session = StringSession()
        session.set_dc(dc, PROD_DC2, 443)
        session.auth_key = AuthKey(key)
        made = TelegramClient(session, api=API.TelegramDesktop)
        made.UserId = user_id
        return made

    async def build() -> None:
        (dc, key, user_id), *more = accounts
        desktop = await TDesktop.FromTelethon(client(dc, key, user_id), flag=UseCurrentSession)
        for dc, key, user_id in more:
            await Account.FromTelethon(client(dc, key, user_id), flag=UseCurrentSession, owner=desktop)
        desktop.SaveTData(str(path), passcode=passcode)

    asyncio.run(build())
    return path


# ---- detection ------------------------------------------------------------------------------------------


def test_each_format_is_detected(tmp_path: Path) -> None:
    (tmp_path / "strings.txt").write_text(telethon_string() + "\n")
    cases: list[tuple[str | Path, SessionFormat]] = [
        (telethon_string(), SessionFormat.TELETHON_STRING),
        (telethon_string(ip="::1"), SessionFormat.TELETHON_STRING),
        (pyrogram_string(PYROGRAM_LAYOUT, 2, 12345, False, KEY, USER_ID, False), SessionFormat.PYROGRAM_STRING),
        (pyrogram_string(PYROGRAM_OLD, 4, False, KEY, 123, False), SessionFormat.PYROGRAM_STRING),
        (pyrogram_string(PYROGRAM_OLD_64, 5, False, KEY, USER_ID, False), SessionFormat.PYROGRAM_STRING),
        (tmp_path / "strings.txt", SessionFormat.TELETHON_STRING),
        (telethon_file(tmp_path / "t.session"), SessionFormat.TELETHON_FILE),
        (pyrogram_file(tmp_path / "p.session"), SessionFormat.PYROGRAM_FILE),
        (pyrogram_file(tmp_path / "k.session", KURIGRAM_SESSIONS, 7), SessionFormat.PYROGRAM_FILE),
        (opentele_tdata(tmp_path / "tdata", [(2, KEY, USER_ID)]), SessionFormat.TDATA),
        (tmp_path, SessionFormat.TDATA),  # the folder holding tdata/
    ]
    for source, expected in cases:
        assert detect_format(source) == expected, source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty"),
        ("helloworld12", "not a session string"),
        ("A!!!", "not valid base64"),
        (pyrogram_string(PYROGRAM_LAYOUT, 2, 1, False, KEY, 1, False)[:-40], "not a session string"),
    ],
)
def test_what_is_no_session_string_is_named(source: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        detect_format(source)


# ---- Telethon -------------------------------------------------------------------------------------------


def test_telethon_strings_and_files_are_read_and_written_as_telethon_does(tmp_path: Path) -> None:
    [read] = read_sessions(telethon_string(4, "127.0.0.1", 4430))
    assert read.session == SessionData(4, "127.0.0.1", 4430, KEY) and read.user_id is None
    assert session_to_string(read, SessionFormat.TELETHON_STRING) == telethon_string(4, "127.0.0.1", 4430)
    [from_file] = read_sessions(telethon_file(tmp_path / "a.session", 3, "149.154.175.100"))
    assert from_file.session == SessionData(3, "149.154.175.100", 443, KEY)
    written = write_session(read, SessionFormat.TELETHON_FILE, tmp_path / "out.session")
    opened = SQLiteSession(str(shutil.copy(written, tmp_path / "copy.session")))  # Telethon upgrades in place
    assert (opened.dc_id, opened.server_address, opened.port, opened.auth_key.key) == (4, "127.0.0.1", 4430, KEY)
    opened.close()
    assert read_sessions(written)[0].session == read.session


# ---- Pyrogram -------------------------------------------------------------------------------------------


def test_pyrogram_strings_of_every_layout_are_read() -> None:
    current = pyrogram_string(PYROGRAM_LAYOUT, 2, 12345, False, KEY, USER_ID, False)
    old = pyrogram_string(PYROGRAM_OLD, 1, False, KEY, 123456, False)
    old_64 = pyrogram_string(PYROGRAM_OLD_64, 5, False, OTHER_KEY, USER_ID, False)
    assert (len(old), len(old_64)) == (351, 356)  # Pyrogram's SESSION_STRING_SIZE and SESSION_STRING_SIZE_64
    assert read_sessions(current) == [PortableSession(SessionData(2, PROD_DC2, 443, KEY), USER_ID, 12345)]
    assert read_sessions(old) == [PortableSession(SessionData(1, "149.154.175.53", 443, KEY), 123456)]
    assert read_sessions(old_64) == [PortableSession(SessionData(5, "91.108.56.130", 443, OTHER_KEY), USER_ID)]
    [test] = read_sessions(pyrogram_string(PYROGRAM_LAYOUT, 2, 7, True, KEY, 42, False))
    assert test.test_mode and test.session.server_address == "149.154.167.40"


def test_a_pyrogram_string_written_is_what_pyrogram_exports_and_reads() -> None:
    written = session_to_string(ITEM, SessionFormat.PYROGRAM_STRING)
    assert written == pyrogram_string(PYROGRAM_LAYOUT, 2, 12345, False, KEY, USER_ID, False)
    assert pyrogram_unpack(written, PYROGRAM_LAYOUT) == (2, 12345, False, KEY, USER_ID, False)
    assert session_to_string(ITEM, "pyrogram-string", api_id=777) != written  # the API ID it records
    from_telethon = read_sessions(telethon_string(2, "149.154.167.40"))[0]  # a test-DC Telethon session
    moved = PortableSession(from_telethon.session, 9, 1, from_telethon.test_mode)
    assert pyrogram_unpack(session_to_string(moved, "pyrogram-string"), PYROGRAM_LAYOUT)[2] is True


def test_pyrogram_files_of_pyrogram_kurigram_and_old_pyrogram_are_read(tmp_path: Path) -> None:
    [pyro] = read_sessions(pyrogram_file(tmp_path / "p.session"))
    assert pyro == PortableSession(SessionData(2, PROD_DC2, 443, KEY), USER_ID, 12345)
    kurigram = pyrogram_file(tmp_path / "k.session", KURIGRAM_SESSIONS, 7, server_address="10.1.2.3", port=8443)
    assert read_sessions(kurigram)[0].session == SessionData(2, "10.1.2.3", 8443, KEY)
    old_schema = PYROGRAM_SESSIONS.replace(" api_id INTEGER,", "")  # Pyrogram 1 (schema 2): no api_id
    [old] = read_sessions(pyrogram_file(tmp_path / "o.session", old_schema, 2, dc_id=4))
    assert old.api_id is None and old.session.server_address == "149.154.167.91"


def test_a_pyrogram_file_written_has_pyrogram_2s_schema(tmp_path: Path) -> None:
    path = write_session(ITEM, SessionFormat.PYROGRAM_FILE, tmp_path / "out.session")
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(sessions)")]
        row = connection.execute("SELECT dc_id, api_id, test_mode, auth_key, user_id, is_bot FROM sessions").fetchone()
        version = connection.execute("SELECT number FROM version").fetchone()[0]
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    connection.close()
    assert columns == ["dc_id", "api_id", "test_mode", "auth_key", "date", "user_id", "is_bot"]
    assert row == (2, 12345, 0, KEY, USER_ID, 0) and version == 3 and {"peers", "version"} <= tables


def test_a_bots_session_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="bot's session"):
        read_sessions(pyrogram_string(PYROGRAM_LAYOUT, 2, 1, False, KEY, 42, True))
    with pytest.raises(InvalidValue, match="bot's session"):
        read_sessions(pyrogram_file(tmp_path / "bot.session", is_bot=1))


# ---- tdata ----------------------------------------------------------------------------------------------


def test_a_tdata_written_by_opentele_is_read_with_each_account(tmp_path: Path) -> None:
    one = opentele_tdata(tmp_path / "one", [(2, KEY, USER_ID)])
    assert read_sessions(one) == [PortableSession(SessionData(2, PROD_DC2, 443, KEY), USER_ID, TDESKTOP_API_ID)]
    two = opentele_tdata(tmp_path / "two", [(2, KEY, 111), (4, OTHER_KEY, 222)])
    assert [(s.session.dc_id, s.session.auth_key, s.user_id) for s in read_sessions(two)] == [
        (2, KEY, 111),
        (4, OTHER_KEY, 222),
    ]


def test_a_tdata_with_a_local_passcode_needs_it(tmp_path: Path) -> None:
    locked = opentele_tdata(tmp_path / "locked", [(2, KEY, USER_ID)], passcode="sesame")
    with pytest.raises(PasscodeRequired, match="locked with a local passcode"):
        read_sessions(locked)
    with pytest.raises(PasscodeRequired, match="wrong local passcode") as wrong:
        read_sessions(locked, passcode="open")
    assert wrong.value.__context__ is None and wrong.value.code == "passcode"  # opentele's frames are dropped
    assert read_sessions(locked, passcode="sesame")[0].session.auth_key == KEY
    unlocked = opentele_tdata(tmp_path / "unlocked", [(2, OTHER_KEY, 7)])
    assert read_sessions(unlocked, passcode="sesame")[0].user_id == 7  # a batch's passcode stops no other folder


def test_a_tdata_written_here_is_read_by_opentele(tmp_path: Path) -> None:
    from opentele.td import TDesktop

    second = PortableSession(SessionData(4, "149.154.167.91", 443, OTHER_KEY), user_id=222)
    folder = write_tdata([ITEM, second], tmp_path / "out", passcode="pw")
    desktop = TDesktop(str(folder), passcode="pw")
    assert [(int(a.MainDcId), a.UserId, a.authKey.key) for a in desktop.accounts] == [
        (2, USER_ID, KEY),
        (4, 222, OTHER_KEY),
    ]
    assert TDESKTOP_API_HASH == desktop.api.api_hash and TDESKTOP_API_ID == desktop.api.api_id
    modes = {
        Path(root) / name: os.stat(Path(root) / name).st_mode & 0o777 for root, _, n in os.walk(folder) for name in n
    }
    assert os.stat(folder).st_mode & 0o777 == 0o700 and set(modes.values()) == {0o600}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left of the temporary folder


# ---- every format, out and back in ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(SessionFormat))
def test_every_format_round_trips(tmp_path: Path, fmt: SessionFormat) -> None:
    dest = write_session(ITEM, fmt, tmp_path / f"out-{fmt}")
    assert detect_format(dest) is fmt
    [back] = read_sessions(dest, fmt)
    assert back.session == ITEM.session
    if fmt not in (SessionFormat.TELETHON_STRING, SessionFormat.TELETHON_FILE):  # Telethon records no user
        assert back.user_id == USER_ID
    expected_mode = 0o700 if fmt is SessionFormat.TDATA else 0o600
    assert os.stat(dest).st_mode & 0o777 == expected_mode
    with pytest.raises(InvalidValue, match="already exists"):
        write_session(ITEM, fmt, dest)
    if fmt.is_string:
        assert len(dest.read_text().splitlines()) == 1


def test_formats_that_record_the_user_need_it() -> None:
    unknown = PortableSession(ITEM.session, api_id=1)
    for fmt in ("pyrogram-string", "tdata"):
        with pytest.raises(InvalidValue, match="user id"):
            write_session(unknown, fmt, Path("/nonexistent/never"))
    with pytest.raises(InvalidValue, match="only a tdata"):
        write_session(ITEM, "telethon-file", Path("/nonexistent/never"), passcode="x")


def test_a_text_file_may_hold_several_strings_of_either_library(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    pyro = pyrogram_string(PYROGRAM_OLD, 1, False, OTHER_KEY, 9, False)
    path.write_text(f"\ufeff{telethon_string()}\r\n\n  {pyro}  \n")
    assert [s.session.auth_key for s in read_sessions(path)] == [KEY, OTHER_KEY]


# ---- damage ---------------------------------------------------------------------------------------------


def _damaged(tmp_path: Path) -> list[tuple[Callable[[], object], str]]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-sqlite.session").write_bytes(b"hello")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00junk")
    with sqlite3.connect(tmp_path / "other.session") as connection:
        connection.execute("CREATE TABLE notes (id INTEGER)")
    connection.close()
    (tmp_path / "garbage.session").write_bytes(b"SQLite format 3\x00" + b"\x07" * 200)
    broken = opentele_tdata(tmp_path / "broken", [(2, KEY, USER_ID)])
    key_file = broken / "key_datas"
    key_file.write_bytes(key_file.read_bytes()[:-20] + bytes(20))
    pyro = pyrogram_file(tmp_path / "p.session")
    return [
        (lambda: read_sessions(telethon_string()[:-30]), "wrong length"),
        (lambda: read_sessions("1!!!" + telethon_string()[4:]), "not valid base64"),
        (lambda: read_sessions(pyrogram_string(PYROGRAM_LAYOUT, 2, 1, False, KEY, 1, False)[:300]), "not a session"),
        (lambda: read_sessions("A" * 362, "pyrogram-string"), "no authorization key|data centre"),
        (lambda: read_sessions(tmp_path / "not-sqlite.session"), "not an SQLite database"),
        (lambda: read_sessions(tmp_path / "binary.txt"), "nor a text file"),
        (lambda: read_sessions(tmp_path / "other.session"), "not a Telethon or Pyrogram session"),
        (lambda: read_sessions(tmp_path / "garbage.session"), "damaged"),
        (lambda: read_sessions(tmp_path / "empty"), "tdata folder is empty"),
        (lambda: read_sessions(tmp_path / "empty", "tdata"), "tdata folder is empty"),
        (lambda: detect_format(tmp_path / "empty"), "not a Telegram Desktop tdata folder"),
        (lambda: read_sessions(broken), "damaged"),
        (lambda: read_sessions(pyro, "telethon-file"), "Pyrogram .session file, not a Telethon one"),
        (lambda: read_sessions(telethon_string(), "tdata"), "not a string"),
        (lambda: read_sessions(tmp_path / "missing.session"), "no such file"),
    ]


def test_damaged_inputs_each_say_what_is_wrong_and_never_show_the_key(tmp_path: Path) -> None:
    secrets = (KEY.hex(), base64.urlsafe_b64encode(KEY).decode()[:40], telethon_string()[:40])
    for call, message in _damaged(tmp_path):
        with pytest.raises(InvalidValue, match=message) as caught:
            call()
        assert not any(secret in str(caught.value) for secret in secrets)
    assert "auth_key" not in repr(ITEM) and KEY.hex() not in repr(ITEM)


def test_reading_codecs_imports_no_telethon() -> None:
    """The CLI imports these codecs: Telethon (and opentele) are loaded only when a tdata is met."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from common.session_formats import read_sessions, write_session\n"
        f"read_sessions({telethon_string()!r})\n"
        "print(sorted(m for m in ('telethon', 'opentele', 'sqlalchemy', 'redis') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
