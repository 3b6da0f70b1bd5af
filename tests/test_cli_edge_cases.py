"""What an operator can type, or have lying in a folder, that is not what the CLI expects.

Each case gets a clear message and exit 1 or 2 (never 70, never a traceback, never a hang), and changes
nothing. The CLI runs as the README runs it, against a real SQLite file and Redis.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession

from common.sessions import read_small_file
from common.validation import InvalidValue, has_unsafe_characters, is_ascii_number, printable, validate_api_id
from tests.support.fake_telegram import session_for
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.processes
API_HASH = "0123456789abcdef0123456789abcdef"


def refused(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    for phrase in phrases:
        assert phrase in output, output


def import_string(stack: Stack, phone: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session_for(phone), "--phone", phone, *extra
    )


@pytest.fixture
def with_worker(stack: Stack) -> Stack:
    assert stack.cli("add", "w1", "--address", "10.0.0.1").returncode == 0
    return stack


@pytest.mark.parametrize("typed", ["9223372036854775808", "18446744073709551616", "9" * 5000, "١٢٣", "0", "3.5", "1e3"])
def test_an_account_id_out_of_range_or_not_ascii_is_a_usage_error(with_worker: Stack, typed: str) -> None:
    refused(with_worker.cli("accounts", "show", typed), 2, "is not an account id (a whole number from 1 to 2147483647)")


def test_every_command_taking_an_account_id_checks_it(with_worker: Stack) -> None:
    for command in ("start", "stop", "restart", "remove"):
        refused(with_worker.cli("accounts", command, "9223372036854775808"), 2, "is not an account id")
    refused(with_worker.cli("accounts", "move", "9223372036854775808", "--to", "w1"), 2, "is not an account id")


@pytest.mark.parametrize("typed", ["nan", "inf", "-inf", "-1", "0", "1e9", "soon"])
def test_a_timeout_must_be_a_finite_number_of_seconds(with_worker: Stack, typed: str) -> None:
    refused(with_worker.cli("accounts", "restart", "1", "--timeout", typed), 2, "is not a number of seconds")


def test_argument_bytes_that_are_not_utf8_are_refused(with_worker: Stack) -> None:
    for args in ([b"show", b"\xff\xfe"], [b"accounts", b"show", b"\xc3"], [b"add", b"w\xe9", b"--address", b"x"]):
        result = subprocess.run(
            [sys.executable, str(ROOT / "run_cli.py"), *args],
            cwd=with_worker.workdir,
            env=with_worker.env,
            capture_output=True,
            timeout=60,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        assert result.returncode == 2, output
        assert "not valid UTF-8" in output and "Traceback" not in output
    assert [w["name"] for w in with_worker.cli_json("list")] == ["w1"]


def test_non_ascii_digits_are_not_an_api_id(with_worker: Stack) -> None:
    for typed in ("١٢٣", "１２３", "²"):
        refused(
            import_string(with_worker, "+15550001234", "--api-id", typed, "--api-hash", API_HASH), 1, "invalid API ID"
        )
    assert with_worker.cli_json("accounts", "list") == []
    assert import_string(with_worker, "+15550001234", "--api-id", "123", "--api-hash", API_HASH).returncode == 0


@pytest.mark.parametrize(
    "address", ["10.0.0.2\u202e", "srv\x1b[31m", "a\u200bb", "host\u2028name", "x\x7fy", "10.0.0.1\nevil"]
)
def test_control_and_bidi_characters_are_refused_in_addresses(with_worker: Stack, address: str) -> None:
    refused(with_worker.cli("add", "w2", "--address", address), 1, "invalid server address")
    assert [w["name"] for w in with_worker.cli_json("list")] == ["w1"]


@pytest.mark.parametrize("name", ["w2\n", "w\u202e2", "w 2", "ｗ2", ".w2"])
def test_worker_names_are_plain_ascii(with_worker: Stack, name: str) -> None:
    refused(with_worker.cli("add", name, "--address", "10.0.0.2"), 1, "invalid worker name")
    assert [w["name"] for w in with_worker.cli_json("list")] == ["w1"]


def test_outside_text_is_shown_with_unsafe_characters_escaped(with_worker: Stack) -> None:
    assert import_string(with_worker, "+15550001234", "--api-id", "123", "--api-hash", API_HASH).returncode == 0
    hostile = "Eve\x1b]0;pwned\x07\u202egnp.exe"  # a Telegram display name can hold these
    database = with_worker.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE accounts SET tg_name = ?", (hostile,))
    for args in (["accounts", "list"], ["accounts", "show", "1"]):
        result = with_worker.cli(*args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\x07" not in result.stdout
        assert "Eve\\x1b]0;pwned\\x07\\u202egnp.exe" in result.stdout
    shown = with_worker.cli("accounts", "list", "--json").stdout
    assert "\x1b" not in shown and "\u202e" not in shown
    assert json.loads(shown)[0]["name"] == hostile  # escaped for the terminal, the same data for a program


def _telethon_file(path: Path, key: bytes) -> None:
    session = SQLiteSession(str(path))
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(key)
    session.save()
    session.close()


def test_a_folder_import_skips_each_bad_file_with_its_reason_and_imports_the_rest(
    with_worker: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    _telethon_file(folder / "15550000001.session", bytes([1]) * 256)
    _telethon_file(folder / "15550000002.session", bytes([2]) * 256)
    (folder / "15550000002.json").write_text('{"phone": ')  # a broken sidecar
    text_key = folder / "15550000003.session"
    with sqlite3.connect(text_key) as connection:
        connection.execute(
            "CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER, auth_key BLOB)"
        )
        connection.execute("INSERT INTO sessions VALUES (2, '127.0.0.1', 443, ?)", ("k" * 256,))
    (folder / "15550000004.session").mkdir()
    os.mkfifo(folder / "15550000005.session")
    with open(folder / "15550000006.session", "wb") as huge:
        huge.truncate(2 * 1024**3)  # sparse: 2 GB to anyone who reads it
    result = with_worker.cli(
        "accounts", "import", "--worker", "w1", "--folder", str(folder), "--api-id", "123", "--api-hash", API_HASH
    )
    refused(
        result,
        1,
        "imported 1 of 6 session file(s) onto w1",
        "skipped 15550000002.session: its 15550000002.json is not valid JSON",
        "skipped 15550000003.session: the .session file stores its authorization key as text",
        "skipped 15550000004.session: is a folder, not a file",
        "skipped 15550000005.session: is not a regular file (a FIFO, socket or device)",
        "skipped 15550000006.session: is too large (2,147,483,648 bytes",
    )
    assert [a["phone"] for a in with_worker.cli_json("accounts", "list")] == ["+1 *** ***-00-01"]


def test_a_single_session_file_that_is_a_fifo_or_huge_is_refused_without_reading_it(
    with_worker: Stack, tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe.session"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.session"
    with open(huge, "wb") as handle:
        handle.truncate(2 * 1024**3)
    for path, phrase in ((fifo, "is not a regular file"), (huge, "is too large")):
        result = with_worker.cli(
            "accounts", "import", "--worker", "w1", "--session-file", str(path), "--phone", "+15550001234",
            "--api-id", "123", "--api-hash", API_HASH,
        )  # fmt: skip
        refused(result, 1, phrase)
    assert with_worker.cli_json("accounts", "list") == []


def test_a_session_string_from_stdin_is_read_bounded(with_worker: Stack) -> None:
    result = with_worker.cli(
        "accounts", "import", "--worker", "w1", "--session-string", "-", "--phone", "+15550001234",
        "--api-id", "123", "--api-hash", API_HASH, input_text="1" + "A" * 20_000_000,
    )  # fmt: skip
    refused(result, 1, "the session string")
    assert with_worker.cli_json("accounts", "list") == []


def test_the_ascii_and_printable_rules() -> None:
    assert is_ascii_number("123") and not is_ascii_number("١٢٣") and not is_ascii_number("²")
    assert not is_ascii_number("1" * 19) and not is_ascii_number("") and not is_ascii_number(" 1")
    with pytest.raises(InvalidValue, match="invalid API ID"):
        validate_api_id("１２３")
    assert validate_api_id(" 123 ") == 123
    assert has_unsafe_characters("a\u202eb") and has_unsafe_characters("\x1b") and not has_unsafe_characters("Ёж 🙂")
    assert printable("a\u202eb\x1bc") == "a\\u202eb\\x1bc" and printable("Ёж 🙂") == "Ёж 🙂"


def test_reading_a_small_file_checks_before_it_reads(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"data")
    assert read_small_file(tmp_path / "ok") == b"data"
    with pytest.raises(InvalidValue, match="no such file"):
        read_small_file(tmp_path / "missing")
    with pytest.raises(InvalidValue, match="too large"):
        read_small_file(tmp_path / "ok", limit=3)


@pytest.mark.parametrize(
    ("variable", "value", "phrase"),
    [
        ("WORKER_ADDRESS", "10.0.0.1\u202e", "WORKER_ADDRESS must be a host name or IP"),
        ("WORKER_ADDRESS", "bad\x1bhost", "WORKER_ADDRESS must be a host name or IP"),
        ("WORKER_THREADS", "٤", "WORKER_THREADS must be a whole number"),
        ("WORKER_NAME", "w1\nw2", "WORKER_NAME must be"),
    ],
)
def test_a_worker_refuses_unsafe_settings_before_it_registers(
    stack: Stack, variable: str, value: str, phrase: str
) -> None:
    process = stack.start_worker("w1", **{variable: value})
    assert process.wait(60) == 78  # EX_CONFIG
    log = stack.log_of(process)
    assert phrase in log and "Traceback" not in log
