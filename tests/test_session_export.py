"""`run_cli.py accounts export` (`backend.session_export`): an account imported into one install is exported in each
format and imported into a fresh second install (another database), and the session read back there connects as
the same account with the real Telethon client on the loopback MTProto server. Around it: the confirmation, the
files' modes and sidecars, no secret on the terminal, the `account.exported` event (actor and format), choosing
accounts by ID, --worker and --all, refusing to overwrite, and accounts that cannot be exported reported as
skipped."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from backend.cli import cli
from backend.cli.accounts_export import FORMATS
from backend.cli.base import actor
from backend.connections import connect_database
from common.crypto import SecretBox
from database.models import Account
from sandbox.mtproto import MTProtoServer, ServerKey
from tests.support.mtproto_harness import API_HASH, API_ID, make_client, run
from tests.support.stack import TEST_SECRET_KEY

PHONE = "+15550009001"
OTHER = "+15550009002"
PROXY = "socks5://exporter:pr0xy-pass@127.0.0.1:1080"


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    key = ServerKey()
    from telethon.crypto import rsa

    rsa.add_key(key.public_pem, old=False)
    return key


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key) as running:
        running.add_account(PHONE, first_name="Ann", username="ann_export")
        running.add_account(OTHER, first_name="Bob")
        yield running


class Install:
    """One control plane: its own SQLite database, the tests' Redis, the tests' SECRET_KEY."""

    def __init__(self, database: Path, redis_url: str) -> None:
        self.url = f"sqlite:///{database}"
        self.env = {"DATABASE_URL": self.url, "REDIS_URL": redis_url, "SECRET_KEY": TEST_SECRET_KEY}

    def cli(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), env=self.env, input=stdin, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def json(self, *args: str) -> Any:
        code, out, err = self.cli(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    def import_string(self, session: str, phone: str, worker: str = "w1", *extra: str) -> int:
        code, out, err = self.cli(
            "accounts", "import", "--worker", worker, "--session-string", "-", "--api-id", str(API_ID),
            "--api-hash", API_HASH, "--phone", phone, *extra, stdin=session + "\n",
        )  # fmt: skip
        assert code == 0, err
        return int(out.split("imported account ")[1].split()[0])

    def set_user_id(self, account_id: int, user_id: int) -> None:
        """What the worker reports once the account has run (or been checked): its Telegram user id."""
        engine, sessions = connect_database(self.url)
        with sessions.begin() as session:
            session.execute(update(Account).where(Account.id == account_id).values(tg_user_id=user_id))
        engine.dispose()

    def drop_session(self, account_id: int) -> None:
        engine, sessions = connect_database(self.url)
        with sessions.begin() as session:
            session.execute(update(Account).where(Account.id == account_id).values(session_enc=None))
        engine.dispose()

    def stored_session(self, account_id: int) -> str:
        engine, sessions = connect_database(self.url)
        with sessions() as session:
            account = session.get(Account, account_id)
            assert account is not None and account.session_enc is not None
            token = account.session_enc
        engine.dispose()
        return SecretBox(TEST_SECRET_KEY).decrypt(token)


@pytest.fixture
def installs(tmp_path: Path, redis_url: str) -> tuple[Install, Install]:
    first, second = Install(tmp_path / "first.db", redis_url), Install(tmp_path / "second.db", redis_url)
    for install in (first, second):
        assert install.cli("add", "w1", "--address", "10.0.0.1")[0] == 0
    assert first.cli("add", "w2", "--address", "10.0.0.2")[0] == 0
    return first, second


def export(install: Install, out: Path, fmt: str, *selection: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    return install.cli("accounts", "export", *selection, "--format", fmt, "--out", str(out), "--yes", *extra)


async def whoami(server: MTProtoServer, session: str) -> int:
    """The user id the session is logged in as, asked of the server by the real Telethon client."""
    client = make_client(server, session)
    try:
        await client.connect()
        me = await client.get_me()
        return int(me.id)
    finally:
        await client.disconnect()


def secrets_of(session: str) -> list[str]:
    return [session, session[1:40], API_HASH, PHONE, PHONE.lstrip("+"), "pr0xy-pass"]


# --- the round trip, per format ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_exported_session_imported_into_a_fresh_install_runs_the_same_account(
    fmt: str, installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, second = installs
    session = server.session_string(PHONE)
    user_id = server.account(PHONE).user_id
    account_id = first.import_string(session, PHONE, "w1", "--proxy", PROXY)
    first.set_user_id(account_id, user_id)
    before = first.json("accounts", "show", str(account_id))
    out = tmp_path / "export"

    code, stdout, stderr = export(first, out, fmt, str(account_id))
    assert code == 0, stderr
    for secret in secrets_of(session):
        assert secret not in stdout + stderr

    code, _out, err = second.cli("accounts", "import", "--worker", "w1", "--folder", str(out))
    assert code == 0, err
    [imported] = second.json("accounts", "list")
    shown = second.json("accounts", "show", str(imported["id"]))
    assert shown["phone"] == before["phone"] and shown["api_id"] == API_ID
    assert shown["device"] == before["device"] and shown["proxy"] == before["proxy"] is not None
    stored = second.stored_session(imported["id"])
    assert run(whoami(server, stored)) == user_id


# --- what is written -----------------------------------------------------------------------------------------


def test_files_are_private_and_the_sidecar_says_what_the_import_reads(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    session = server.session_string(PHONE)
    account_id = first.import_string(session, PHONE, "w1", "--proxy", PROXY)
    first.set_user_id(account_id, server.account(PHONE).user_id)
    out = tmp_path / "out"
    for fmt in ("telethon-file", "tdata"):
        code, stdout, stderr = export(first, out / fmt, fmt, str(account_id), extra=("--json",))
        assert code == 0, stderr
        document = json.loads(stdout)
        assert document["written"] == 1 and document["skipped"] == 0 and document["format"] == fmt
        [entry] = document["accounts"]
        session_path, sidecar_path = (Path(p) for p in entry["files"])
        assert entry["status"] == "written" and sidecar_path == out / fmt / f"account-{account_id}.json"
        assert stat.S_IMODE((out / fmt).stat().st_mode) == 0o700
        if fmt == "tdata":
            assert session_path.is_dir()
            for folder, _dirs, files in os.walk(session_path):
                assert stat.S_IMODE(Path(folder).stat().st_mode) == 0o700
                for name in files:
                    assert stat.S_IMODE((Path(folder) / name).stat().st_mode) == 0o600
        else:
            assert session_path.name == f"account-{account_id}.session"
            assert stat.S_IMODE(session_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sidecar_path.stat().st_mode) == 0o600
        sidecar = json.loads(sidecar_path.read_text())
        device = first.json("accounts", "show", str(account_id))["device"]
        assert sidecar["phone"] == PHONE and sidecar["api_id"] == sidecar["app_id"] == API_ID
        assert sidecar["api_hash"] == sidecar["app_hash"] == API_HASH and sidecar["proxy"] == PROXY
        for field in ("device_model", "system_version", "app_version", "lang_code", "system_lang_code"):
            assert sidecar[field] == device[field], field
        for secret in secrets_of(session):
            assert secret not in stdout + stderr


def test_without_yes_it_asks_and_without_a_terminal_it_refuses(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    account_id = first.import_string(server.session_string(PHONE), PHONE)
    out = tmp_path / "out"
    code, _out, err = first.cli("accounts", "export", str(account_id), "--format", "telethon-file", "--out", str(out))
    assert code == 1 and "Export 1 account as telethon-file" in err and "live credentials" in err
    assert "pass --yes" in err
    assert not out.exists()


def test_the_confirmation_names_the_count_and_the_risk(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = installs
    first.import_string(server.session_string(PHONE), PHONE)
    first.import_string(server.session_string(OTHER), OTHER)
    monkeypatch.setattr("backend.cli.base.can_ask", lambda: True)
    out = tmp_path / "out"
    args = ("accounts", "export", "--all", "--format", "telethon-string", "--out", str(out))
    code, _out, err = first.cli(*args, stdin="n\n")
    assert code == 1 and "Export 2 accounts" in err and "live credentials" in err
    assert not list(out.glob("*")) if out.exists() else True
    code, _out, err = first.cli(*args, stdin="y\n")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "account-1.json",
        "account-1.txt",
        "account-2.json",
        "account-2.txt",
    ]


def test_the_export_is_recorded_with_who_and_which_format(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    account_id = first.import_string(server.session_string(PHONE), PHONE)
    assert export(first, tmp_path / "out", "telethon-string", str(account_id))[0] == 0
    events = first.json("accounts", "show", str(account_id))["events"]
    exported = [e for e in events if e["kind"] == "account.exported"]
    assert len(exported) == 1
    assert exported[0]["actor"] == actor() and "telethon-string" in exported[0]["detail"]


def test_worker_and_all_choose_their_accounts(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    on_w1 = first.import_string(server.session_string(PHONE), PHONE, "w1")
    on_w2 = first.import_string(server.session_string(OTHER), OTHER, "w2")
    code, out, err = export(first, tmp_path / "w2", "telethon-string", "--worker", "w2", extra=("--json",))
    assert code == 0, err
    assert [a["id"] for a in json.loads(out)["accounts"]] == [on_w2]
    code, out, err = export(first, tmp_path / "all", "telethon-string", "--all", extra=("--json",))
    assert code == 0, err
    assert [a["id"] for a in json.loads(out)["accounts"]] == [on_w1, on_w2]
    assert export(first, tmp_path / "x", "telethon-string", "--worker", "ghost")[0] == 1
    code, _out, err = export(first, tmp_path / "x", "telethon-string", "99")
    assert code == 1 and "no account with id 99" in err
    code, _out, err = export(first, tmp_path / "x", "telethon-string", "--all", str(on_w1))
    assert code == 2 and "one way" in err
    code, _out, err = export(first, tmp_path / "x", "telethon-string")
    assert code == 2


def test_accounts_that_cannot_be_exported_are_skipped_with_the_reason(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    without_session = first.import_string(server.session_string(PHONE), PHONE)
    first.drop_session(without_session)
    without_user_id = first.import_string(server.session_string(OTHER), OTHER)
    code, out, err = export(first, tmp_path / "out", "pyrogram-file", "--all", extra=("--json",))
    assert code == 1 and "2 of 2 account(s) skipped" in err
    reasons = {a["id"]: a for a in json.loads(out)["accounts"]}
    assert reasons[without_session]["status"] == "skipped"
    assert reasons[without_session]["reason_code"]["c"] == "no_session"
    assert reasons[without_user_id]["reason_code"] == {"c": "export_needs_user_id", "p": {"format": "pyrogram-file"}}
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    code, out, _err = export(first, tmp_path / "out2", "telethon-file", "--all")
    assert code == 1 and "skipped" in out and "written" in out


def test_existing_files_are_replaced_only_with_force(
    installs: tuple[Install, Install], server: MTProtoServer, tmp_path: Path
) -> None:
    first, _ = installs
    account_id = first.import_string(server.session_string(PHONE), PHONE)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"account-{account_id}.session"
    stale.write_bytes(b"old")
    stale.chmod(0o644)
    code, _out, err = export(first, out, "telethon-file", str(account_id))
    assert code == 1 and "--force" in err and stale.read_bytes() == b"old"
    assert not (out / f"account-{account_id}.json").exists()
    code, _out, err = export(first, out, "telethon-file", str(account_id), extra=("--force",))
    assert code == 0, err
    assert stale.read_bytes().startswith(b"SQLite format 3") and stat.S_IMODE(stale.stat().st_mode) == 0o600
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind


def test_the_cli_and_the_bot_offer_every_format_the_codecs_write() -> None:
    from bot.export_views import SESSION_FORMATS
    from common.session_formats import SessionFormat

    assert set(FORMATS) == set(SESSION_FORMATS.values()) == {fmt.value for fmt in SessionFormat}
