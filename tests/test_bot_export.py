"""Export from the bot's account card (`bot.handlers.export`) through `Dispatcher.feed_update`, with real Redis and
the database: pick a format, confirm, and the session arrives as a document (a `.session` file as it is, a tdata
folder as a `.zip`) with its sidecar, each captioned as a live credential; the export is recorded with the admin
as actor; an account that cannot be exported in a format says why on its card; no message shows a secret."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from common.session_formats import read_sessions
from database.models import Account
from tests.support.bot_harness import BotHarness
from tests.support.fake_telegram import session_for

ADMIN = 111
API_HASH = "0123456789abcdef0123456789abcdef"
PHONE = "+79991234567"
MASKED = "+7 *** ***-45-67"


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN}))
    yield running
    running.close()


def add_account(harness: BotHarness, user_id: int | None = None) -> int:
    harness.services.fleet.add_worker("w1", "10.0.0.1", "test")
    accounts = harness.services.accounts
    account_id = accounts.import_session(
        "w1", 12345, API_HASH, session_string=session_for(PHONE), phone=PHONE, actor="t"
    ).id
    if user_id is not None:  # what the worker reports once the account has run
        with accounts.sessions.begin() as session:
            session.execute(update(Account).where(Account.id == account_id).values(tg_user_id=user_id))
    return account_id


def export_from_card(harness: BotHarness, label: str, language: str = "en") -> int:
    """Open the card, Export, pick `label`, confirm; the index of the first call after the confirmation."""
    chat = harness.chat(ADMIN, language)
    chat.send("/accounts")
    chat.click(MASKED)
    chat.click("Export")
    assert "live credential" in chat.text() and MASKED in chat.text()
    chat.click(label)
    assert "Send the session" in chat.text() and "live credential" in chat.text()
    mark = len(harness.core.calls)
    chat.click("Yes, send it")
    return mark


def sent_documents(harness: BotHarness, mark: int) -> list[dict[str, object]]:
    return [c.params for c in harness.core.calls[mark:] if c.method == "sendDocument"]


def test_a_session_file_is_sent_with_its_sidecar_and_the_export_is_recorded(harness: BotHarness) -> None:
    account_id = add_account(harness)
    mark = export_from_card(harness, "Telethon .session")
    documents = sent_documents(harness, mark)
    assert [str(d["chat_id"]) for d in documents] == [str(ADMIN)] * 2
    assert "Live credential" in str(documents[0]["caption"]) and MASKED in str(documents[0]["caption"])
    (_, name, content), (_, side_name, side) = harness.core.uploads[-2:]
    assert (name, side_name) == (f"account-{account_id}.session", f"account-{account_id}.json")
    assert content.startswith(b"SQLite format 3")
    sidecar = json.loads(side)
    assert sidecar["phone"] == PHONE and sidecar["api_hash"] == API_HASH and sidecar["api_id"] == 12345
    assert "Session sent as Telethon .session" in harness.chat(ADMIN, "en").text()
    view = harness.services.accounts.get_account(account_id, 10)
    [event] = [e for e in view.events if e.kind == "account.exported"]
    assert event.actor == f"bot:{ADMIN}" and "telethon-file" in event.detail
    shown = json.dumps([c.params for c in harness.core.calls], ensure_ascii=False)
    assert session_for(PHONE) not in shown and API_HASH not in shown and PHONE not in shown


def test_a_tdata_folder_is_sent_as_a_zip_that_reads_back(harness: BotHarness, tmp_path: Path) -> None:
    account_id = add_account(harness, user_id=777000123)
    mark = export_from_card(harness, "tdata")
    assert len(sent_documents(harness, mark)) == 2
    (_, name, content), _sidecar = harness.core.uploads[-2:]
    assert name == f"account-{account_id}.zip"
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert f"account-{account_id}/key_datas" in archive.namelist()
        archive.extractall(tmp_path)
    [item] = read_sessions(tmp_path / f"account-{account_id}")
    assert item.user_id == 777000123
    assert item.session.auth_key == read_sessions(session_for(PHONE))[0].session.auth_key


def test_a_format_the_account_cannot_be_exported_in_says_why(harness: BotHarness) -> None:
    account_id = add_account(harness)  # its user id is not known yet
    mark = export_from_card(harness, "Pyrogram .session")
    assert sent_documents(harness, mark) == []
    text = harness.chat(ADMIN, "en").text()
    assert f"Account #{account_id} was not exported" in text and "pyrogram-file needs the account's Telegram" in text
    view = harness.services.accounts.get_account(account_id, 10)
    assert not [e for e in view.events if e.kind == "account.exported"]


def test_the_card_offers_export_in_russian_too(harness: BotHarness) -> None:
    add_account(harness)
    chat = harness.chat(ADMIN, "ru")
    chat.send("/accounts")
    chat.click(MASKED)
    chat.click("Выгрузить")
    assert "действующий ключ доступа" in chat.text()
    assert "Папка tdata (архив)" in chat.buttons()
