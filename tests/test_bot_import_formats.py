"""The add-account wizard's import of a file in every format a file can carry (`backend.session_uploads`), through
`Dispatcher.feed_update` with real Redis and the database: a Telethon or Pyrogram `.session` file, a `.txt`
holding either's string, a pasted Pyrogram string, a `.zip` of a tdata folder (locked with a local passcode:
asked, its message deleted; or holding two accounts: their phones asked, each reported). A bot's session and a
damaged file are refused with their code and change nothing; a session already in the fleet is refused naming
its account. No message shows a session or the passcode."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from common.crypto import SecretBox
from common.session_formats import PortableSession, SessionData, session_to_string, write_session, write_tdata
from database.models import Account
from tests.support.bot_api import Call
from tests.support.bot_harness import BotHarness
from tests.support.stack import TEST_SECRET_KEY
from tests.test_bot_handlers import add_worker, live_worker

ADMIN = 111
API_HASH = "0123456789abcdef0123456789abcdef"
PHONE, MASKED = "+79991234567", "+7 *** ***-45-67"
PASSCODE = "open sesame"
DC2 = "149.154.167.51"


def item(n: int, user_id: int = 5_000_000_001) -> PortableSession:
    return PortableSession(SessionData(2, DC2, 443, bytes([n]) * 255 + b"\x01"), user_id=user_id, api_id=12345)


@pytest.fixture
def harness(redis_url: str, sqlite_url: str, redis_client: Redis) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN}))
    add_worker(running, "w1")
    live_worker(redis_client, "w1")
    yield running
    running.close()


def to_session_step(harness: BotHarness, phone: str = PHONE) -> None:
    chat = harness.chat(ADMIN, "en")
    chat.send("/add")
    chat.click("w1")
    chat.click("Import a session")
    chat.send(phone)
    chat.send("12345")
    assert "Pyrogram" in chat.send(API_HASH).params["text"]


def upload(harness: BotHarness, name: str, content: bytes) -> Call:
    harness.core.files[name] = content
    document = {"file_id": name, "file_unique_id": name, "file_name": name, "file_size": len(content)}
    return harness.chat(ADMIN, "en").send(document=document)


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, str(path.relative_to(folder.parent)))
    return buffer.getvalue()


def stored(harness: BotHarness) -> dict[str, str]:
    """Each account's stored session (decrypted), by masked phone."""
    box = SecretBox(TEST_SECRET_KEY)
    with harness.services.accounts.sessions() as session:
        rows = session.query(Account.phone_masked, Account.session_enc).all()
    return {phone: box.decrypt(enc) for phone, enc in rows}


def texts(harness: BotHarness) -> str:
    return "\n".join(str(c.params.get("text", "")) for c in harness.core.calls if c.method == "sendMessage")


def assert_no_secret(harness: BotHarness, *secrets: str) -> None:
    shown = texts(harness)
    assert not any(secret in shown for secret in secrets)


def added(harness: BotHarness) -> str:
    call = harness.core.wait_for(lambda c: c.method == "sendMessage" and "✅ Account added" in c.params.get("text", ""))
    return str(call.params["text"])


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("telethon-file", "acc.session"),
        ("pyrogram-file", "acc.session"),
        ("telethon-string", "acc.txt"),
        ("pyrogram-string", "acc.txt"),
    ],
)
def test_a_file_in_each_format_is_imported(harness: BotHarness, tmp_path: Path, fmt: str, name: str) -> None:
    session = item(7)
    content = write_session(session, fmt, tmp_path / name).read_bytes()
    to_session_step(harness)
    mark = len(harness.core.calls)
    upload(harness, name, content)
    assert MASKED in added(harness)
    assert stored(harness) == {MASKED: session.session.to_string()}
    assert any(c.method == "deleteMessage" for c in harness.core.calls[mark:])  # the file left the chat
    assert_no_secret(harness, session.session.to_string()[:40])


def test_a_pasted_pyrogram_string_is_imported_and_deleted(harness: BotHarness) -> None:
    session = item(8)
    text = session_to_string(session, "pyrogram-string")
    to_session_step(harness)
    mark = len(harness.core.calls)
    harness.chat(ADMIN, "en").send(text)
    assert MASKED in added(harness)
    assert stored(harness) == {MASKED: session.session.to_string()}
    assert any(c.method == "deleteMessage" for c in harness.core.calls[mark:])


def test_a_locked_tdata_asks_its_passcode_deletes_it_and_imports(harness: BotHarness, tmp_path: Path) -> None:
    session = item(9)
    content = zipped(write_session(session, "tdata", tmp_path / "tdata", passcode=PASSCODE))
    to_session_step(harness)
    assert "local passcode" in upload(harness, "desktop.zip", content).params["text"]
    chat = harness.chat(ADMIN, "en")
    assert "Wrong local passcode" in chat.send("not it").params["text"]
    assert stored(harness) == {}
    mark = len(harness.core.calls)
    chat.send(PASSCODE)
    assert MASKED in added(harness)
    deleted = [c for c in harness.core.calls[mark:] if c.method == "deleteMessage"]
    assert deleted  # the passcode's message
    assert stored(harness) == {MASKED: session.session.to_string()}
    assert_no_secret(harness, PASSCODE)


def test_a_tdata_of_two_accounts_asks_their_phones_and_reports_each(harness: BotHarness, tmp_path: Path) -> None:
    first, second = item(10, 5_000_000_010), item(11, 5_000_000_011)
    content = zipped(write_tdata([first, second], tmp_path / "tdata"))
    to_session_step(harness)
    asked = upload(harness, "two.zip", content).params["text"]
    assert "2 accounts" in asked and "5000000010" in asked and "5000000011" in asked
    chat = harness.chat(ADMIN, "en")
    assert "Send 2 phone numbers" in chat.send("+15550000010").params["text"]
    report = chat.send("+15550000010\n+15550000011").params["text"]
    assert "Imported 2 of 2" in report and "+1 *** ***-00-10" in report and "+1 *** ***-00-11" in report
    assert stored(harness) == {
        "+1 *** ***-00-10": first.session.to_string(),
        "+1 *** ***-00-11": second.session.to_string(),
    }


def test_a_bot_session_and_a_damaged_file_are_refused_and_change_nothing(harness: BotHarness, tmp_path: Path) -> None:
    import sqlite3

    bot_file = write_session(item(12), "pyrogram-file", tmp_path / "bot.session")
    with sqlite3.connect(bot_file) as connection:
        connection.execute("UPDATE sessions SET is_bot = 1")
    connection.close()
    to_session_step(harness)
    assert "bot's session" in upload(harness, "bot.session", bot_file.read_bytes()).params["text"]
    damaged = upload(harness, "broken.session", b"SQLite format 3\x00" + b"\x00" * 200).params["text"]
    assert "«broken.session» is damaged or not a session" in damaged
    assert "is damaged or not a session" in upload(harness, "junk.zip", b"PK not a zip").params["text"]
    assert stored(harness) == {}
    session = item(13)  # and the wizard still takes a good one
    upload(harness, "good.session", write_session(session, "telethon-file", tmp_path / "good.session").read_bytes())
    assert MASKED in added(harness)


def test_a_session_already_in_the_fleet_is_refused_naming_its_account(harness: BotHarness, tmp_path: Path) -> None:
    session = item(14)
    holder = harness.services.accounts.import_session(
        "w1", 12345, API_HASH, session_string=session.session.to_string(), phone="+15550000099", actor="t"
    )
    to_session_step(harness)
    refused = upload(
        harness, "dup.session", write_session(session, "telethon-file", tmp_path / "d.session").read_bytes()
    )
    text = refused.params["text"]
    assert f"account #{holder.id}" in text and "+1 *** ***-00-99" in text
    assert list(stored(harness)) == ["+1 *** ***-00-99"]
