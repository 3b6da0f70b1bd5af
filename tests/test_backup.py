"""`run_cli.py backup` / `restore`: a database filled through the real services (workers, accounts with their
sessions, events, operations, plugin configurations, the board's users, ads, invites, chats, reports) comes
back row for row on SQLite and PostgreSQL, and across the two; new rows after a restore get fresh ids; a
wrong passphrase, a damaged or truncated archive, another SECRET_KEY or a database with rows is refused with
one clear line and changes nothing; `--merge skip-existing` and `--replace` do what they say. The CLI runs
as a real process, as the README runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, create_engine, inspect, select, text, update
from sqlalchemy.engine import Engine

from board.service import BoardService
from common.crypto import SecretBox
from config import BoardLimits
from database.audit import record_audit
from database.board_models import ReportTarget
from database.engine import SCHEMA_HEAD, create_db_engine, current_revision, open_database
from database.events import NewEvent, record_events
from database.models import Worker
from database.workers import add_worker
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY, Stack

pytestmark = pytest.mark.processes
PASSPHRASE = "correct horse battery staple"
PHONE = "+15550007788"
API_HASH = "0123456789abcdef0123456789abcdef"
AD_TITLE = "Zebracycle for sale"
OTHER_KEY = "another-secret-key-0123456789abcdefghijklmnop"
DEVICE_COLUMNS = (
    "device_model",
    "device_system_version",
    "device_app_version",
    "device_lang_code",
    "device_system_lang_code",
    "device_lang_pack",
)


# ---- databases and the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def new_database(tmp_path: Path, postgres_available: bool) -> Iterator[Callable[[str], str]]:
    """Makes an empty database of a kind (`sqlite` or `postgresql`) and returns its URL."""
    made: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.db'}"
        if not postgres_available:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL unreachable in CI")
            pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
        name, url = _create_postgres_database()
        made.append(name)
        return url

    yield make
    for name in made:
        _drop_postgres_database(name)


@pytest.fixture
def cli(tmp_path: Path, netguard_log: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_cli.py ARGS` as a process against `url` (stdin: the passphrase, then `answers`)."""
    workdir = tmp_path / "cli"
    workdir.mkdir()
    stack = Stack(workdir, "redis://127.0.0.1:1/0", "sqlite:///unused.db", netguard_log)

    def run(
        url: str, *args: str, passphrase: str | None = PASSPHRASE, answers: str = "", secret_key: str = TEST_SECRET_KEY
    ) -> subprocess.CompletedProcess[str]:
        stdin = (f"{passphrase}\n" if passphrase is not None else "") + answers
        extra = ("--passphrase-from-stdin",) if passphrase is not None else ()
        env = {"DATABASE_URL": url, "SECRET_KEY": secret_key}
        return stack.cli(*args, *extra, env=env, input_text=stdin, timeout=180)

    return run


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout) if result.stdout.lstrip().startswith("{") else result.stdout


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    for phrase in phrases:
        assert phrase in output, output


# Alembic's table, and the audit log, which records each backup and restore as it ends (after the archive
# is written, after the rows are loaded): a source and its restored copy differ by those rows.
UNCOMPARED = ("alembic_version", "audit_log")


def audit_log(url: str) -> list[tuple[Any, ...]]:
    """The audit log's rows, oldest first: (action, outcome, actor)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [
            tuple(row) for row in connection.execute(text("SELECT action, outcome, actor FROM audit_log ORDER BY id"))
        ]
    engine.dispose()
    return rows


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours (not Alembic's, not the audit log, not SQLite's search index), in key
    order."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine, only=lambda name, _m: name not in UNCOMPARED and not name.startswith("board_ads_fts"))
    with engine.connect() as connection:
        rows = {
            table.name: [
                tuple(row)
                for row in connection.execute(select(table).order_by(*(table.primary_key.columns or table.columns)))
            ]
            for table in metadata.sorted_tables
        }
    engine.dispose()
    return rows


# ---- a database in use --------------------------------------------------------------------------------------


def insert_account(engine: Engine, box: SecretBox, worker_id: int, phone: str) -> int:
    """An account row as `accounts import` writes it: phone, API hash and session encrypted, the phone's keyed
    hash and its mask (inserted through the live schema, whatever columns later migrations add)."""
    accounts = Table("accounts", MetaData(), autoload_with=engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    values = {
        "phone_enc": box.encrypt(phone),
        "phone_lookup": box.lookup(phone),
        "phone_masked": f"+1 *** ***-{phone[-4:-2]}-{phone[-2:]}",
        "api_id": 12345,
        "api_hash_enc": box.encrypt(API_HASH),
        "session_enc": box.encrypt(session_for(phone)),
        "worker_id": worker_id,
        "desired_state": "running",
        "status": "stopped",
        "status_detail": "",
        "status_code": "",
        "check_summary": "",
        "check_result": "",
        "created_at": now,
        "updated_at": now,
        **{column: "x" for column in DEVICE_COLUMNS},
    }
    with engine.begin() as connection:
        return connection.execute(accounts.insert().values(values)).inserted_primary_key[0]


def seed(url: str) -> dict[str, Any]:
    """Fills every part of the control plane's database the way the services do; returns what to look for."""
    engine, sessions = open_database(url)
    box = SecretBox(TEST_SECRET_KEY)
    with sessions.begin() as session:
        alpha = add_worker(session, "w-alpha", "10.0.0.1", "test").id
        beta = add_worker(session, "w-beta", "10.0.0.2", "test").id
    first = insert_account(engine, box, alpha, PHONE)
    second = insert_account(engine, box, beta, "+15550007799")
    now = datetime.now(UTC).replace(tzinfo=None)
    tables = MetaData()
    tables.reflect(engine, only=["account_operations", "account_plugins"])
    with engine.begin() as connection:
        connection.execute(
            tables.tables["account_operations"].insert(),
            [
                {
                    "batch": f"b{i}",
                    "account_id": first,
                    "name": "set_2fa",
                    "params": json.dumps({"password_enc": box.encrypt("hunter2-password")}),
                    "status": "done",
                    "result": '{"ok": true}',
                    "error": "",
                    "error_code": "",
                    "worker": "w-alpha",
                    "attempts": 1,
                    "actor": "t",
                    "created_at": now,
                    "finished_at": now + timedelta(seconds=3),
                }
                for i in range(3)
            ],
        )
        connection.execute(
            tables.tables["account_plugins"].insert(),
            [
                {
                    "account_id": second,
                    "plugin": "autoreply",
                    "config": '{"text": "away"}',
                    "actor": "t",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    with sessions.begin() as session:
        record_events(
            session,
            [
                NewEvent("account.started", f"account:{1000 + i}", None, "t", datetime.now(UTC) - timedelta(minutes=i))
                for i in range(2500)
            ],
        )
    board = BoardService(sessions, box, BoardLimits())
    author, guest = board.user(910001, "en"), board.user(910002, "ru")
    ad = board.create_ad(author, AD_TITLE, "Two wheels and a bell, hardly used.", "sale")
    invite = board.send_invite(guest, ad.id, "Is it still there?")
    decision = board.decide_invite(author, invite.invite_id, True)
    board.report(guest, ReportTarget.CHAT, decision.chat_id, "rude")
    with engine.connect() as connection:
        session_enc = connection.execute(
            text("SELECT session_enc FROM accounts WHERE id = :id"), {"id": first}
        ).scalar()
    engine.dispose()
    return {"session_enc": session_enc, "phone_masked": f"+1 *** ***-{PHONE[-4:-2]}-{PHONE[-2:]}"}


@pytest.fixture
def seeded(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    url = new_database(getattr(request, "param", "sqlite"))
    return url, seed(url)


def write_backup(cli: Callable[..., Any], url: str, out: Path, *args: str) -> Path:
    ok(cli(url, "backup", "--out", str(out), *args))
    return out


# ---- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql"], indirect=True)
def test_a_restore_brings_back_every_row_and_new_rows_get_fresh_ids(
    seeded: tuple[str, dict[str, Any]],
    new_database: Callable[[str], str],
    cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    source, marks = seeded
    kind = "sqlite" if source.startswith("sqlite") else "postgresql"
    archive = write_backup(cli, source, tmp_path / "fleet.backup", "--json")
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    raw = archive.read_bytes()
    for secret in (marks["session_enc"], marks["phone_masked"], PHONE, AD_TITLE, "w-alpha", "autoreply"):
        assert secret.encode() not in raw
    assert not list(tmp_path.glob("*.partial"))

    target = new_database(kind)
    done = ok(cli(target, "restore", str(archive), "--yes", "--json"))
    assert done["schema"] == "upgraded" and done["revision"] == SCHEMA_HEAD and done["notes"] == []
    assert done["rows"] == sum(len(rows) for rows in snapshot(source).values()) > 2500
    before = snapshot(source)
    assert snapshot(target) == before
    assert all(before[name] for name in ("workers", "accounts", "fleet_events", "account_operations"))
    assert all(before[name] for name in ("account_plugins", "board_users", "board_ads", "board_chats", "board_reports"))
    assert current_revision(create_db_engine(target)) == SCHEMA_HEAD

    # New rows after the restore: the sequences (PostgreSQL) and SQLite's rowids are past the loaded ids.
    engine, sessions = open_database(target)
    box = SecretBox(TEST_SECRET_KEY)
    with sessions.begin() as session:
        worker = add_worker(session, "w-gamma", "10.0.0.3", "test")
    assert worker.id > max(row[0] for row in before["workers"])
    assert insert_account(engine, box, worker.id, "+15550007711") > max(row[0] for row in before["accounts"])
    board = BoardService(sessions, box, BoardLimits())
    assert board.find_user(910001) is not None  # the keyed lookups match under the same SECRET_KEY
    assert [ad.title for ad in board.list_ads(None, q="zebracycle").ads] == [AD_TITLE]  # the search index too
    newer = board.create_ad(board.user(910003, "en"), "A second thing", "Another text here.", "other")
    assert newer.id and len(snapshot(target)["board_ads"]) == 2
    engine.dispose()


def test_a_sqlite_archive_restores_into_postgresql(
    seeded: tuple[str, dict[str, Any]], new_database: Callable[[str], str], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    archive = write_backup(cli, source, tmp_path / "fleet.backup")
    target = new_database("postgresql")
    ok(cli(target, "restore", str(archive), "--yes"))
    assert snapshot(target) == snapshot(source)
    engine, sessions = open_database(target)
    with sessions.begin() as session:
        assert add_worker(session, "w-new", "10.0.0.9", "t").id == 3
    engine.dispose()


def test_a_key_file_instead_of_a_passphrase(
    seeded: tuple[str, dict[str, Any]], new_database: Callable[[str], str], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    archive = tmp_path / "fleet.backup"
    ok(cli(source, "backup", "--out", str(archive), "--key-file", str(key), passphrase=None))
    target = new_database("sqlite")
    refused(cli(target, "restore", str(archive)), "written with a key file, not a passphrase")
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    refused(cli(target, "restore", str(archive), "--key-file", str(other), passphrase=None), "wrong key file")
    ok(cli(target, "restore", str(archive), "--yes", "--key-file", str(key), passphrase=None))
    assert snapshot(target) == snapshot(source)


# ---- refusals that change nothing ---------------------------------------------------------------------------


def test_a_wrong_passphrase_a_damaged_or_a_truncated_archive_changes_nothing(
    seeded: tuple[str, dict[str, Any]], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    archive = write_backup(cli, source, tmp_path / "fleet.backup")
    raw = archive.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    (tmp_path / "flipped.backup").write_bytes(bytes(flipped))
    (tmp_path / "cut.backup").write_bytes(raw[: len(raw) * 2 // 3])
    (tmp_path / "longer.backup").write_bytes(raw + b"\x00")
    (tmp_path / "other.txt").write_bytes(b"hello, not an archive\n" * 10)
    # The database to restore into holds other rows; even --replace --yes must leave them as they are.
    before = snapshot(source)
    cases = {
        "fleet.backup": (PASSPHRASE + "!", "wrong passphrase"),
        "flipped.backup": (PASSPHRASE, "the archive is damaged"),
        "cut.backup": (PASSPHRASE, "the archive is truncated"),
        "longer.backup": (PASSPHRASE, "the archive is damaged"),
        "other.txt": (PASSPHRASE, "not a fleet backup archive"),
    }
    for name, (passphrase, message) in cases.items():
        refused(cli(source, "restore", str(tmp_path / name), "--replace", "--yes", passphrase=passphrase), message)
        assert snapshot(source) == before, name


def test_another_secret_key_is_refused_and_a_rotated_one_is_pointed_to_rekey(
    seeded: tuple[str, dict[str, Any]], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    archive = write_backup(cli, source, tmp_path / "fleet.backup")
    target = f"sqlite:///{tmp_path / 'target.db'}"
    result = cli(target, "restore", str(archive), secret_key=OTHER_KEY)
    refused(result, "encrypted under another SECRET_KEY", "run_cli.py rekey")
    assert TEST_SECRET_KEY not in result.stdout + result.stderr
    assert not (tmp_path / "target.db").exists()
    done = ok(cli(target, "restore", str(archive), "--yes", "--json", secret_key=f"{OTHER_KEY},{TEST_SECRET_KEY}"))
    assert any("run_cli.py rekey" in note for note in done["notes"])
    assert snapshot(target) == snapshot(source)


@pytest.mark.parametrize("seeded", ["sqlite", "postgresql"], indirect=True)
def test_a_database_with_rows_is_refused_unless_told_to_merge_or_replace(
    seeded: tuple[str, dict[str, Any]], new_database: Callable[[str], str], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    archive = write_backup(cli, source, tmp_path / "fleet.backup")
    whole = snapshot(source)
    target = new_database("sqlite" if source.startswith("sqlite") else "postgresql")
    ok(cli(target, "restore", str(archive), "--yes"))
    # The target drifts: a row changed, a row gone, a row the archive does not have.
    engine = create_db_engine(target)
    with engine.begin() as connection:
        connection.execute(update(Worker).where(Worker.name == "w-beta").values(address="10.9.9.9"))
        connection.execute(text("DELETE FROM fleet_events WHERE id = (SELECT MIN(id) FROM fleet_events)"))
        connection.execute(text("DELETE FROM account_plugins"))
    _engine, sessions = open_database(target)
    with sessions.begin() as session:
        add_worker(session, "w-local", "10.0.0.7", "t")
    drifted = snapshot(target)

    refused(cli(target, "restore", str(archive)), "the database is not empty", "--merge skip-existing", "--replace")
    assert snapshot(target) == drifted
    refused(cli(target, "restore", str(archive), "--replace"), "Delete the", "pass --yes")  # no terminal
    assert snapshot(target) == drifted

    merged = ok(cli(target, "restore", str(archive), "--yes", "--merge", "skip-existing", "--json"))
    assert merged["rows"] == 2  # the event and the plugin configuration that were gone
    now = snapshot(target)
    assert next(row for row in now["workers"] if row[1] == "w-beta")[2] == "10.9.9.9"  # kept as it was
    assert now["account_plugins"] == whole["account_plugins"] and now["fleet_events"][:-1] == whole["fleet_events"]
    assert "w-local" in {row[1] for row in now["workers"]}

    logged = audit_log(target)
    assert [row[:2] for row in logged] == [("database.restore", "ok")] * 2  # the restore, then the merge
    replaced = ok(cli(target, "restore", str(archive), "--replace", "--json", "--yes"))
    assert replaced["deleted"] == sum(len(rows) for rows in now.values())  # all but the audit log
    assert snapshot(target) == whole
    # No restore takes the audit log away: what it recorded before stays, and the replace is added to it.
    assert audit_log(target) == [*logged, ("database.restore", "ok", logged[0][2])]
    engine.dispose()
    _engine.dispose()


# ---- schema revisions ---------------------------------------------------------------------------------------


def test_an_older_archive_is_migrated_up_and_a_newer_one_refused(
    new_database: Callable[[str], str], cli: Callable[..., Any], tmp_path: Path
) -> None:
    from backend.backup_format import Passphrase, write_archive
    from backend.backup_schema import upgrade

    source = new_database("sqlite")
    engine = create_db_engine(source)
    upgrade(engine, "0007_operations_plugins")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO workers (id, name, address, is_active, status, created_at)"
                " VALUES (4, 'w-old', '10.0.0.4', 1, 'offline', '2026-01-02 03:04:05.000000')"
            )
        )
    engine.dispose()
    archive = write_backup(cli, source, tmp_path / "old.backup")
    assert current_revision(create_db_engine(source)) == "0007_operations_plugins"  # a backup migrates nothing

    # Into a database already at the head, with no rows but its audit log: built again at the archive's revision
    # (which has no audit log), then upgraded, and the audit log put back.
    target = new_database("sqlite")
    head_engine, head_sessions = open_database(target)
    with head_sessions.begin() as session:
        record_audit(session, "cli:earlier", "admin.add", ["admin:5"])
    head_engine.dispose()
    done = ok(cli(target, "restore", str(archive), "--yes", "--json"))
    assert done["schema"] == "rebuilt" and done["upgraded_to"] == SCHEMA_HEAD
    assert [row[0] for row in audit_log(target)] == ["admin.add", "database.restore"]
    assert current_revision(create_db_engine(target)) == SCHEMA_HEAD
    assert [row[:3] for row in snapshot(target)["workers"]] == [(4, "w-old", "10.0.0.4")]
    assert "detail_code" in {c["name"] for c in inspect(create_db_engine(target)).get_columns("fleet_events")}

    future = tmp_path / "future.backup"
    with write_archive(future, Passphrase(PASSPHRASE)) as writer:
        writer.write(
            {
                "archive": "tg-fleet control plane backup",
                "format": 1,
                "created_at": "2030-01-01T00:00:00+00:00",
                "revision": "9999_from_the_future",
                "dialect": "sqlite",
                "app_version": "9.9",
                "secrets": {"scheme": "fernet", "key_fingerprints": _fingerprints(), "note": ""},
                "tables": [],
            }
        )
        writer.write({"end": {"rows": 0}})
    empty = new_database("sqlite")
    refused(cli(empty, "restore", str(future)), "9999_from_the_future, which this code does not know")


def _fingerprints() -> list[str]:
    from backend.backup import key_fingerprints

    return key_fingerprints(TEST_SECRET_KEY)


# ---- the command line ---------------------------------------------------------------------------------------


def test_the_backup_command_refuses_what_it_cannot_do_well(
    seeded: tuple[str, dict[str, Any]], cli: Callable[..., Any], tmp_path: Path
) -> None:
    source, _marks = seeded
    archive = write_backup(cli, source, tmp_path / "fleet.backup")
    first = archive.read_bytes()
    refused(cli(source, "backup", "--out", str(archive)), "exists", "--force")
    assert archive.read_bytes() == first
    ok(cli(source, "backup", "--out", str(archive), "--force"))
    assert archive.read_bytes() != first and stat.S_IMODE(archive.stat().st_mode) == 0o600
    refused(cli(source, "backup", "--out", str(tmp_path / "b"), passphrase="short"), "passphrase is too short")
    refused(cli(source, "backup", "--out", str(tmp_path / "c"), passphrase=None), "use --passphrase-from-stdin")
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    refused(cli(missing, "backup", "--out", str(tmp_path / "d")), "no database at")
    assert not (tmp_path / "nowhere.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file() and "backup" in p.name) == ["fleet.backup"]
    both = cli(source, "restore", str(archive), "--merge", "skip-existing", "--replace")
    assert both.returncode == 2 and "exclude each other" in both.stderr
