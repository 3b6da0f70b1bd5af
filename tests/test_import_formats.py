"""`run_cli.py accounts import` with sessions in every format, run as the README runs it (a real SQLite file and
Redis): one of each in a folder and in a .zip, detection and `--format`, a damaged file skipped with its reason
while the rest import, tdata folders with a local passcode and with two accounts — and no secret ever printed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from common.crypto import SecretBox
from common.session_formats import TDESKTOP_API_ID
from tests.support.stack import TEST_SECRET_KEY, Stack
from tests.test_session_formats import (
    KEY,
    PYROGRAM_LAYOUT,
    PYROGRAM_OLD,
    opentele_tdata,
    pyrogram_file,
    pyrogram_string,
    telethon_file,
    telethon_string,
)

pytestmark = pytest.mark.processes
API_HASH = "0123456789abcdef0123456789abcdef"
PASSCODE = "open sesame"


def key(n: int) -> bytes:
    return bytes([n]) * 255 + b"\x01"


def secrets_of(*texts: str) -> list[str]:
    return [KEY.hex(), *(t[:48] for t in texts), PASSCODE, API_HASH, "b18441a1ff607e10a989891a5462e627"]


@pytest.fixture
def with_worker(stack: Stack) -> Stack:
    assert stack.cli("add", "w1", "--address", "10.0.0.1").returncode == 0
    return stack


def stored_sessions(stack: Stack) -> dict[str, str]:
    """Each account's stored session (decrypted), by masked phone."""
    box = SecretBox(TEST_SECRET_KEY)
    with sqlite3.connect(stack.env["DATABASE_URL"].removeprefix("sqlite:///")) as connection:
        rows = connection.execute("SELECT phone_masked, session_enc FROM accounts").fetchall()
    connection.close()
    return {phone: box.decrypt(session) for phone, session in rows}


def one_of_each(folder: Path) -> dict[str, str]:
    """A session of each format, named after its phone; what each one's stored Telethon string must be."""
    folder.mkdir(parents=True)
    strings = {
        "telethon": telethon_string(2, "149.154.167.51", 443, key(1)),
        "pyrogram": pyrogram_string(PYROGRAM_LAYOUT, 4, 777, False, key(2), 1002, False),
    }
    (folder / "15550000001.txt").write_text(strings["telethon"] + "\n")
    (folder / "15550000002.txt").write_text(strings["pyrogram"] + "\n")
    telethon_file(folder / "15550000003.session", 2, "149.154.167.51", key(3))
    pyrogram_file(folder / "15550000004.session", dc_id=1, auth_key=key(4), user_id=1004)
    opentele_tdata(folder / "15550000005" / "tdata", [(5, key(5), 1005)])
    return {
        "+1 *** ***-00-01": strings["telethon"],
        "+1 *** ***-00-02": telethon_string(4, "149.154.167.91", 443, key(2)),
        "+1 *** ***-00-03": telethon_string(2, "149.154.167.51", 443, key(3)),
        "+1 *** ***-00-04": telethon_string(1, "149.154.175.53", 443, key(4)),
        "+1 *** ***-00-05": telethon_string(5, "91.108.56.130", 443, key(5)),
    }


def imports(stack: Stack, *args: str, input_text: str = "") -> subprocess.CompletedProcess[str]:
    result = stack.cli("accounts", "import", "--worker", "w1", *args, input_text=input_text, timeout=120)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    return result


def assert_no_secret(result: subprocess.CompletedProcess[str], *texts: str) -> None:
    output = result.stdout + result.stderr
    for secret in secrets_of(*texts):
        assert secret not in output, secret


def test_a_folder_of_every_format_imports_each_with_a_result_row(with_worker: Stack, tmp_path: Path) -> None:
    expected = one_of_each(tmp_path / "mixed")
    result = imports(with_worker, "--folder", str(tmp_path / "mixed"), "--api-id", "123", "--api-hash", API_HASH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported 5 of 5 session file(s) onto w1" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["FILE", "ACCOUNT", "RESULT"]
    for name in ("15550000001.txt", "15550000002.txt", "15550000003.session", "15550000004.session"):
        assert any(line.startswith(name) and "imported #" in line for line in lines), name
    assert any(line.startswith("15550000005 ") and "+1 *** ***-00-05" in line for line in lines)
    assert "importing" in result.stderr  # the progress bar
    assert stored_sessions(with_worker) == expected  # each stored as the Telethon string of the same key and DC
    assert_no_secret(result, *expected.values())


def test_a_zip_of_every_format_imports_the_same_and_a_damaged_file_is_skipped(
    with_worker: Stack, tmp_path: Path
) -> None:
    expected = one_of_each(tmp_path / "mixed")
    (tmp_path / "mixed" / "15550000006.session").write_bytes(b"SQLite format 3\x00" + b"\x07" * 100)
    (tmp_path / "mixed" / "15550000007.txt").write_text(telethon_string()[:-30])
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((tmp_path / "mixed").rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(tmp_path / "mixed").as_posix())
    result = imports(with_worker, "--zip", str(archive), "--api-id", "123", "--api-hash", API_HASH)
    assert result.returncode == 1  # two files could not be imported, and the exit code says so
    assert "imported 5 of 7 session file(s) onto w1" in result.stdout
    assert "skipped export.zip/15550000006.session: the .session file is damaged" in result.stdout
    assert "skipped export.zip/15550000007.txt: the session string has the wrong length" in result.stdout
    assert any(line.startswith("export.zip/15550000005 ") for line in result.stdout.splitlines())
    assert stored_sessions(with_worker) == expected
    assert_no_secret(result, *expected.values())


def test_credentials_come_from_the_sidecar_or_the_session_itself(with_worker: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "no-flags"
    folder.mkdir()
    pyro = pyrogram_string(PYROGRAM_LAYOUT, 2, 777, False, key(1), 1001, False)
    (folder / "15550000011.txt").write_text(pyro)
    (folder / "15550000011.json").write_text(json.dumps({"app_hash": "f" * 32, "device": "Pixel 7"}))
    opentele_tdata(folder / "desk" / "tdata", [(2, key(2), 1002), (4, key(3), 1003)])
    sidecar = {"accounts": [{"user_id": 1002, "phone": "+15550000012"}, {"user_id": 1003, "phone": "+15550000013"}]}
    (folder / "desk.json").write_text(json.dumps(sidecar))
    (folder / "15550000014.txt").write_text(pyrogram_string(PYROGRAM_OLD, 2, False, key(4), 1004, False))
    result = imports(with_worker, "--folder", str(folder))
    assert result.returncode == 1 and "imported 3 of 4 session file(s)" in result.stdout
    assert "skipped 15550000014.txt: no API app in the pool" in result.stdout  # an old Pyrogram string has none
    listed = {a["phone"]: a for a in with_worker.cli_json("accounts", "list")}
    assert listed["+1 *** ***-00-11"]["api_id"] == 777  # the Pyrogram session's own, with its sidecar's hash
    assert listed["+1 *** ***-00-11"]["device"]["device_model"] == "Pixel 7"
    assert listed["+1 *** ***-00-12"]["api_id"] == listed["+1 *** ***-00-13"]["api_id"] == TDESKTOP_API_ID
    assert "desk [2/2]" in result.stdout
    assert_no_secret(result, pyro)


def test_a_tdata_with_a_local_passcode(with_worker: Stack, tmp_path: Path) -> None:
    opentele_tdata(tmp_path / "15550000021" / "tdata", [(2, key(1), 1001)], passcode=PASSCODE)
    tdata = str(tmp_path / "15550000021")
    base = ("--tdata", tdata, "--api-id", "123", "--api-hash", API_HASH)
    missing = imports(with_worker, *base)
    assert missing.returncode == 1
    assert "locked with a local passcode: give it with --passcode-from-stdin" in missing.stderr
    wrong = imports(with_worker, *base, "--passcode-from-stdin", input_text="not it\n")
    assert wrong.returncode == 1 and "wrong local passcode" in wrong.stderr
    assert with_worker.cli_json("accounts", "list") == []  # nothing changed
    right = imports(with_worker, *base, "--passcode-from-stdin", input_text=PASSCODE + "\n")
    assert right.returncode == 0, right.stderr
    assert "imported account 1 (+1 *** ***-00-21) on w1" in right.stdout
    assert stored_sessions(with_worker) == {"+1 *** ***-00-21": telethon_string(2, "149.154.167.51", 443, key(1))}
    for result in (missing, wrong, right):
        assert_no_secret(result)


def test_single_imports_detect_or_are_told_the_format(with_worker: Stack, tmp_path: Path) -> None:
    pyro = pyrogram_string(PYROGRAM_LAYOUT, 2, 777, False, key(1), 1001, False)
    creds = ("--api-id", "123", "--api-hash", API_HASH)
    result = imports(with_worker, "--session-string", "-", "--phone", "+15550000031", *creds, input_text=pyro)
    assert result.returncode == 0, result.stderr
    session = telethon_file(tmp_path / "t.session", key=key(2))
    forced = imports(
        with_worker, "--session-file", str(session), "--format", "pyrogram-file", "--phone", "+1555", *creds
    )
    assert forced.returncode == 1 and "t.session: this is a Telethon .session file, not a Pyrogram one" in forced.stderr
    pyro_file = pyrogram_file(tmp_path / "p.session", auth_key=key(3), user_id=1003)
    from_file = imports(with_worker, "--session-file", str(pyro_file), "--phone", "+15550000033", *creds)
    assert from_file.returncode == 0, from_file.stderr
    bot = pyrogram_string(PYROGRAM_LAYOUT, 2, 1, False, key(4), 4, True)
    refused = imports(with_worker, "--session-string", bot, "--phone", "+15550000034", *creds)
    assert refused.returncode == 1 and "bot's session: the fleet runs user accounts" in refused.stderr
    usage = imports(with_worker, "--folder", str(tmp_path), "--zip", str(session))
    assert usage.returncode == 2 and "give exactly one of" in usage.stderr
    assert set(stored_sessions(with_worker)) == {"+1 *** ***-00-31", "+1 *** ***-00-33"}
    for each in (result, forced, from_file, refused):
        assert_no_secret(each, pyro, bot)


def test_a_folder_with_locked_and_open_tdata_takes_one_passcode(with_worker: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "desktops"
    opentele_tdata(folder / "15550000041" / "tdata", [(2, key(1), 1001)], passcode=PASSCODE)
    opentele_tdata(folder / "15550000042", [(2, key(2), 1002)])
    creds = ("--api-id", "123", "--api-hash", API_HASH)
    without = imports(with_worker, "--folder", str(folder), *creds)
    assert without.returncode == 1 and "imported 1 of 2" in without.stdout
    assert (
        "skipped 15550000041: the tdata folder is locked with a local passcode: give it with --passcode-from-stdin"
        in (without.stdout)
    )
    given = imports(with_worker, "--folder", str(folder), "--passcode-from-stdin", *creds, input_text=PASSCODE)
    assert "15550000041" in given.stdout and "+1 *** ***-00-41" in given.stdout
    assert set(stored_sessions(with_worker)) == {"+1 *** ***-00-41", "+1 *** ***-00-42"}
    for result in (without, given):
        assert_no_secret(result)


def test_archives_are_unpacked_only_inside_their_folder(tmp_path: Path) -> None:
    import contextlib

    from backend.session_sources import sources_in, unpacked
    from common.validation import InvalidValue

    for evil in ("../evil.session", "/etc/evil.session", "\\evil.session", "a/../../evil.session", "C:/evil.session"):
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr(evil, b"x")
        with pytest.raises(InvalidValue, match="names a file outside itself"), unpacked(archive):
            pass
        assert not (tmp_path / "evil.session").exists() and not Path("/etc/evil.session").exists()
    locked = tmp_path / "locked.zip"
    with zipfile.ZipFile(locked, "w") as bundle:
        bundle.writestr("a.session", b"x")
    locked.write_bytes(locked.read_bytes().replace(b"PK\x03\x04\x14\x00\x00\x00", b"PK\x03\x04\x14\x00\x01\x00", 1))
    data = bytearray(locked.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1  # the central directory's "encrypted" flag, as zip tools set it
    locked.write_bytes(bytes(data))
    with pytest.raises(InvalidValue, match="password-protected"), unpacked(locked):
        pass
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "broken.zip").write_bytes(b"PK not really")
    with zipfile.ZipFile(tmp_path / "mixed" / "good.zip", "w") as bundle:
        bundle.writestr("15550000001.txt", telethon_string())
        bundle.writestr("inner.zip", b"PK")  # an archive in an archive is not opened
    with contextlib.ExitStack() as archives:
        found = {source.name: source.problem for source in sources_in(tmp_path / "mixed", archives)}
    assert found == {"broken.zip": "is not a readable .zip archive", "good.zip/15550000001.txt": None}


def test_sidecar_credentials_and_proxies_are_read_as_exports_write_them() -> None:
    from backend.cli.importing import Options
    from backend.session_sources import credentials, sidecar_proxy
    from common.session_formats import TDESKTOP_API_HASH, PortableSession, SessionData

    pyro = PortableSession(SessionData(2, "149.154.167.51", 443, KEY), 1, 777)
    tdata = PortableSession(SessionData(2, "149.154.167.51", 443, KEY), 1, TDESKTOP_API_ID)
    batch, single = Options("w1", "5", "a" * 32), Options("w1", "5", "a" * 32, batch=False)
    sidecar = {"app_id": 9, "app_hash": "b" * 32}
    assert credentials(sidecar, pyro, batch) == (9, "b" * 32)  # a folder's sidecar beats the options
    assert credentials(sidecar, pyro, single) == ("5", "a" * 32)  # one typed import: the options first
    assert credentials({}, pyro, Options("w1")) == (777, None)  # the session's own: that app of the pool
    assert credentials({"app_hash": "c" * 32}, pyro, Options("w1")) == (777, "c" * 32)
    assert credentials({}, tdata, Options("w1")) == (TDESKTOP_API_ID, TDESKTOP_API_HASH)
    assert sidecar_proxy("socks5://u:p@h:1") == "socks5://u:p@h:1"
    assert sidecar_proxy([2, "10.0.0.1", 1080, True, "us er", "p@ss"]) == "socks5://us%20er:p%40ss@10.0.0.1:1080"
    assert sidecar_proxy(["http", "h", 8080]) == "http://h:8080" and sidecar_proxy(None) is None


def test_the_cli_offers_every_format_by_its_name() -> None:
    from backend.cli.accounts_import import FORMATS
    from common.session_formats import SessionFormat

    assert FORMATS == tuple(fmt.value for fmt in SessionFormat)  # spelt out so that --help imports no codec
