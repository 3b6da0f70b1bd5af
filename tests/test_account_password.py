"""An account's 2FA password on file (`accounts.password_enc`, issue 17): read from an imported session's sidecar
(`twoFA`, `2fa`, `two_fa`, `password`), stored only encrypted, written back by the export and read again by a
fresh install; `accounts show` says only whether one is on file; `rekey` keeps it readable; the `2fa` operation
uses it as the current password and keeps the new one; and migration 0012 goes up and down on both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine

from backend.accounts_service import AccountService
from backend.cli import cli
from backend.dispatch import TaskDispatcher
from backend.operations_service import OperationsService
from backend.rekey import rekey
from backend.session_sources import sidecar_password
from celery_app.operations import OperationName, OperationStatus
from common.crypto import SecretBox
from database.engine import MIGRATIONS_DIR, SCHEMA_HEAD, create_db_engine, current_revision, open_database
from database.models import Account, AccountOperation
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY
from tests.test_operations_service import add_worker, beat, queued, worker_writes
from tests.test_session_formats import telethon_string

PASSWORD = "cloud-Pa55-word-17"
API_HASH = "0123456789abcdef0123456789abcdef"
OLD = "old-secret-key-0123456789abcdefghijklmnop"
NEW = "new-secret-key-0123456789abcdefghijklmnop"


class Install:
    """One control plane run in-process by its CLI: its own SQLite file, the tests' Redis and SECRET_KEY."""

    def __init__(self, database: Path, redis_url: str) -> None:
        self.path = database
        self.url = f"sqlite:///{database}"
        self.env = {"DATABASE_URL": self.url, "REDIS_URL": redis_url, "SECRET_KEY": TEST_SECRET_KEY}
        assert self.cli("add", "w1", "--address", "10.0.0.1")[0] == 0

    def cli(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def passwords(self) -> dict[str, str | None]:
        """Each account's password on file (decrypted), by masked phone."""
        engine = create_db_engine(self.url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT phone_masked, password_enc FROM accounts")).all()
        engine.dispose()
        box = SecretBox(TEST_SECRET_KEY)
        return {phone: box.decrypt(token) if token else None for phone, token in rows}

    def raw_bytes(self) -> bytes:
        """The database as it lies on disk, its write-ahead log included."""
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())


def key(n: int) -> bytes:
    return bytes([n]) * 255 + b"\x01"


def test_the_usual_sidecar_keys_give_the_password() -> None:
    for name in ("twoFA", "2fa", "two_fa", "password"):
        assert sidecar_password({name: PASSWORD}) == PASSWORD
    assert sidecar_password({"twoFA": 123456}) == "123456"
    assert sidecar_password({"twoFA": "", "password": None, "proxy": {"password": "proxy-pw"}}) is None
    assert sidecar_password({"twoFA": True}) is None


def test_a_sidecar_password_is_kept_encrypted_exported_and_read_again(tmp_path: Path, redis_url: str) -> None:
    first = Install(tmp_path / "first.db", redis_url)
    folder = tmp_path / "bought"
    folder.mkdir()
    (folder / "15550001701.txt").write_text(telethon_string(2, "149.154.167.51", 443, key(1)) + "\n")
    (folder / "15550001701.json").write_text(json.dumps({"app_id": 123, "app_hash": API_HASH, "twoFA": PASSWORD}))
    (folder / "15550001702.txt").write_text(telethon_string(2, "149.154.167.51", 443, key(2)) + "\n")
    (folder / "15550001702.json").write_text(json.dumps({"app_id": 123, "app_hash": API_HASH}))
    code, out, err = first.cli("accounts", "import", "--worker", "w1", "--folder", str(folder))
    assert code == 0, out + err
    assert PASSWORD not in out + err
    assert first.passwords() == {"+1 *** ***-17-01": PASSWORD, "+1 *** ***-17-02": None}
    assert PASSWORD.encode() not in first.raw_bytes()

    listed = {a["phone"]: a for a in json.loads(first.cli("accounts", "list", "--json")[1])}
    with_password, without = listed["+1 *** ***-17-01"], listed["+1 *** ***-17-02"]
    code, out, err = first.cli("accounts", "show", str(with_password["id"]))
    assert code == 0 and "2FA password" in out and "on file" in out and "not on file" not in out
    assert PASSWORD not in out + err
    assert "not on file" in first.cli("accounts", "show", str(without["id"]))[1]
    shown = json.loads(first.cli("accounts", "show", str(with_password["id"]), "--json")[1])
    assert shown["has_password"] is True and PASSWORD not in json.dumps(shown)

    out_dir = tmp_path / "export"
    code, out, err = first.cli(
        "accounts", "export", str(with_password["id"]), str(without["id"]),
        "--format", "telethon-string", "--out", str(out_dir), "--yes",
    )  # fmt: skip
    assert code == 0, err
    assert PASSWORD not in out + err
    sidecars = [json.loads(path.read_text()) for path in sorted(out_dir.glob("*.json"))]
    assert [s.get("twoFA") for s in sidecars] == [PASSWORD, None]

    second = Install(tmp_path / "second.db", redis_url)
    code, out, err = second.cli("accounts", "import", "--worker", "w1", "--folder", str(out_dir))
    assert code == 0, out + err
    assert second.passwords() == {"+1 *** ***-17-01": PASSWORD, "+1 *** ***-17-02": None}
    assert PASSWORD.encode() not in second.raw_bytes()


def test_rekey_keeps_the_password_readable(tmp_path: Path, redis_client: Redis, redis_url: str) -> None:
    _engine, sessions = open_database(f"sqlite:///{tmp_path / 'fleet.db'}")
    old = SecretBox(OLD)
    accounts = AccountService(redis_client, sessions, TaskDispatcher(redis_url), 2.0, lambda: old)
    with sessions.begin() as session:
        from database.workers import add_worker as add_db_worker

        add_db_worker(session, "w1", "10.0.0.1", "test")
    phone = "+15550001703"
    view = accounts.import_session(
        "w1", 12345, API_HASH, session_string=session_for(phone), phone=phone, password=PASSWORD, actor="t"
    )
    assert view.has_password
    from bot.views import account_card

    assert (
        "2FA password: on file" in account_card("en", view, None)[0]
        and PASSWORD not in account_card("en", view, None)[0]
    )
    assert "Облачный пароль: сохранён" in account_card("ru", view, None)[0]
    report = rekey(sessions, redis_client, SecretBox(f"{NEW},{OLD}"))
    assert report.accounts == 1 and report.failed == []
    with sessions() as session:
        token = session.scalars(select(Account.password_enc)).one()
    assert token is not None and SecretBox(NEW).decrypt(token) == PASSWORD


@pytest.fixture
def operations(redis_client: Redis, redis_url: str, tmp_path: Path) -> Iterator[OperationsService]:
    _engine, sessions = open_database(f"sqlite:///{tmp_path / 'ops.db'}")
    box = SecretBox(TEST_SECRET_KEY)
    dispatcher = TaskDispatcher(redis_url)
    accounts = AccountService(redis_client, sessions, dispatcher, 6.0, lambda: box)
    yield OperationsService(redis_client, sessions, dispatcher, 6.0, accounts)


def test_the_2fa_operation_uses_the_password_on_file_and_keeps_the_new_one(
    operations: OperationsService, redis_client: Redis
) -> None:
    box = SecretBox(TEST_SECRET_KEY)
    add_worker(operations, "w1")
    beat(redis_client, "w1")
    phone = "+15550001704"
    view = operations.accounts.import_session(
        "w1", 12345, API_HASH, session_string=session_for(phone), phone=phone, password=PASSWORD, actor="t"
    )
    batch = operations.submit(OperationName.TWO_FA, [view.id], {"new_password": "new-Pa55"}, "t")
    [request] = queued(redis_client, "w1")
    assert box.decrypt(request["params"]["current_password_enc"]) == PASSWORD
    assert box.decrypt(request["params"]["new_password_enc"]) == "new-Pa55"
    assert PASSWORD not in json.dumps(request) and "new-Pa55" not in json.dumps(request)
    with operations.sessions() as session:
        row = session.scalars(select(AccountOperation)).one()
    assert "current_password_enc" not in json.loads(row.params)  # the row keeps what was given

    worker_writes(
        redis_client, row.id, OperationStatus.DONE, "w1", "inst-w1", result={"has_password": True, "changed": True}
    )
    [done] = operations.progress(batch.batch)
    assert done.status == OperationStatus.DONE
    with operations.sessions() as session:
        token = session.scalars(select(Account.password_enc)).one()
    assert token is not None and box.decrypt(token) == "new-Pa55"

    given = operations.submit(OperationName.TWO_FA, [view.id], {"current_password": "typed", "new_password": "x"}, "t")
    assert given.batch
    last = queued(redis_client, "w1")[-1]
    assert box.decrypt(last["params"]["current_password_enc"]) == "typed"  # what the operator gives comes first


# --- migration 0012 ----------------------------------------------------------------------------------------


def _alembic(engine: Engine, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    getattr(command, action)(config, revision)


def _columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("accounts")}


def _triggers(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        return {str(name) for (name,) in rows}


def test_migration_0012_upgrades_and_downgrades(database_url: str) -> None:
    engine = create_db_engine(database_url)
    _alembic(engine, "upgrade", "0011_proxy_pool")
    triggers = _triggers(engine)
    assert triggers and "password_enc" not in _columns(engine)
    _alembic(engine, "upgrade", "0012_account_password")
    assert current_revision(engine) == "0012_account_password"
    assert "password_enc" in _columns(engine) and _triggers(engine) == triggers  # `accounts` was not rebuilt
    _alembic(engine, "downgrade", "0011_proxy_pool")
    assert "password_enc" not in _columns(engine) and _triggers(engine) == triggers
    _alembic(engine, "upgrade", "head")
    assert "password_enc" in _columns(engine) and current_revision(engine) == SCHEMA_HEAD
    engine.dispose()
