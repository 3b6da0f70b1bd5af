"""The audit log and the admins table, on both databases: one row per outermost action, secrets masked, the
record append-only in the database itself, retention, and the admins' roles with ADMIN_IDS as owners."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect as sqlalchemy_inspect
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from backend.admins_service import AdminError, AdminsService
from backend.audit_service import AuditService, InvalidSince, parse_since
from common.roles import Capability, Role
from database.audit import acting_as, audited
from database.engine import open_database
from database.models import utcnow

OWNER = 1001


@pytest.fixture
def plane(database_url: str) -> Any:
    engine, sessions = open_database(database_url)

    class Plane:
        admins = AdminsService(sessions, frozenset({OWNER}))
        audit = AuditService(sessions, retention_days=30)

    Plane.engine = engine  # type: ignore[attr-defined]
    Plane.sessions = sessions  # type: ignore[attr-defined]
    yield Plane
    engine.dispose()


def test_admins_are_added_changed_and_removed_each_with_one_audit_row(plane: Any) -> None:
    with acting_as("shell", "night-shift"):
        plane.admins.add(2002, "operator", "Ann", "cli:ops")
        plane.admins.set_role(2002, "VIEWER ", "cli:ops")
    assert plane.admins.role_of(2002) is Role.VIEWER
    assert plane.admins.role_of(OWNER) is Role.OWNER
    assert plane.admins.role_of(3003) is None
    assert [(v.tg_id, v.role, v.from_env) for v in plane.admins.list_admins()] == [
        (OWNER, Role.OWNER, True),
        (2002, Role.VIEWER, False),
    ]
    plane.admins.remove(2002, "cli:ops")
    rows = plane.audit.entries()
    assert [(r.action, r.targets, r.outcome) for r in rows] == [
        ("admin.remove", ("admin:2002",), "ok"),
        ("admin.set_role", ("admin:2002",), "ok"),
        ("admin.add", ("admin:2002",), "ok"),
    ]
    added = rows[-1]
    assert (added.actor, added.actor_name, added.role, added.params) == (
        "cli:ops",
        "night-shift",
        "shell",
        {"name": "Ann", "role": "operator"},
    )
    assert rows[0].role == "shell"  # no context: the actor's kind says it


def test_refusals_change_nothing_and_are_recorded_with_their_code(plane: Any) -> None:
    for call, code in [
        (lambda: plane.admins.add(OWNER, "viewer", "", "cli:ops"), "admin_from_env"),
        (lambda: plane.admins.remove(OWNER, "cli:ops"), "admin_from_env"),
        (lambda: plane.admins.add(5, "boss", "", "cli:ops"), "invalid_role"),
        (lambda: plane.admins.add("12ab", "viewer", "", "cli:ops"), "invalid_tg_id"),
        (lambda: plane.admins.set_role(404, "viewer", "cli:ops"), "admin_not_found"),
    ]:
        with pytest.raises(AdminError) as raised:
            call()
        assert raised.value.code == code
    assert [v.tg_id for v in plane.admins.list_admins()] == [OWNER]
    outcomes = [r.outcome for r in plane.audit.entries()]
    assert outcomes == [
        "error:admin_not_found",
        "error:invalid_tg_id",
        "error:invalid_role",
        "error:admin_from_env",
        "error:admin_from_env",
    ]


def test_adding_the_same_admin_twice_at_once_leaves_one_row(plane: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def add() -> str:
        try:
            plane.admins.add(7007, "operator", "", "cli:a")
            return "ok"
        except AdminError as error:
            return error.code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: add(), range(30)))
    assert sorted(set(results)) == ["admin_exists", "ok"] and results.count("ok") == 1
    assert [v.tg_id for v in plane.admins.list_admins()] == [OWNER, 7007]


def test_an_audit_row_cannot_be_rewritten_even_by_hand(plane: Any) -> None:
    plane.admins.add(2002, "operator", "", "cli:ops")
    with pytest.raises(DatabaseError, match="audit_log_is_append_only"), plane.sessions.begin() as session:
        session.execute(text("UPDATE audit_log SET actor = 'someone else'"))
    assert plane.audit.entries()[0].actor == "cli:ops"


class Service:
    def __init__(self, sessions: Any) -> None:
        self.sessions = sessions

    @audited("thing.bulk", lambda args, result: [f"account:{i}" for i in result or []], params=("options",))
    def bulk(self, ids: list[int], options: dict[str, Any], actor: str) -> list[int]:
        return [self.one(i, actor) for i in ids]

    @audited("thing.one", lambda args, _: [f"account:{args['account_id']}"], params=("password", "session"))
    def one(self, account_id: int, actor: str, password: str = "", session: str = "") -> int:
        return account_id


def test_an_action_inside_another_is_part_of_its_row_and_secrets_are_masked(plane: Any) -> None:
    service = Service(plane.sessions)
    service.bulk([3, 4], {"password": "hunter2", "bio": "call +7 912 345 67 89", "token": ""}, "bot:9")
    service.one(5, "bot:9", password="s3cret", session="1AbCdEf")
    rows = plane.audit.entries()
    assert [(r.action, r.targets) for r in rows] == [
        ("thing.one", ("account:5",)),
        ("thing.bulk", ("account:3", "account:4")),
    ]
    assert rows[0].params == {"password": "***", "session": "***"}
    assert rows[1].params["options"]["password"] == "***"
    assert "912 345" not in json.dumps(rows[1].params) and rows[1].params["options"]["token"] == ""
    assert "hunter2" not in str(rows) and "s3cret" not in str(rows) and "1AbCdEf" not in str(rows)


def test_filters_by_actor_target_and_time(plane: Any) -> None:
    service = Service(plane.sessions)
    with acting_as("operator", "Ann"):
        service.one(17, "bot:1")
    service.one(170, "cli:bob")
    service.one(7, "cli:bob")
    assert [r.targets for r in plane.audit.entries(target="account:17")] == [("account:17",)]
    assert [r.actor for r in plane.audit.entries(actor="ann")] == ["bot:1"]  # by the recorded name
    assert len(plane.audit.entries(actor="cli:bob")) == 2
    assert len(plane.audit.entries(since="1h")) == 3
    assert plane.audit.entries(since=utcnow() + timedelta(minutes=1)) == []
    with pytest.raises(InvalidSince):
        plane.audit.entries(since="yesterday")
    assert plane.audit.entries(target="account:%") == []  # LIKE's wildcards are plain characters


def test_retention_deletes_only_what_is_older_than_it(plane: Any) -> None:
    Service(plane.sessions).one(1, "cli:x")
    assert plane.audit.prune(now=utcnow() + timedelta(days=29)) == 0
    assert plane.audit.prune(now=utcnow() + timedelta(days=31)) == 1
    assert plane.audit.entries() == []


def test_since_reads_spans_and_dates() -> None:
    now = utcnow()
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-12-01").isoformat() == "2026-12-01T00:00:00+00:00"


def test_recipients_follow_the_roles(plane: Any) -> None:
    plane.admins.add(2, "operator", "", "cli:x")
    plane.admins.add(3, "viewer", "", "cli:x")
    plane.admins.add(4, "moderator", "", "cli:x")
    assert plane.admins.recipients(Capability.OPERATE) == [2, OWNER]
    assert plane.admins.recipients(Capability.MODERATE) == [4, OWNER]


def test_migration_0013_upgrades_and_downgrades(database_url: str) -> None:
    from database.engine import SCHEMA_HEAD, create_db_engine, current_revision
    from tests.test_account_password import _alembic, _triggers

    engine = create_db_engine(database_url)
    _alembic(engine, "upgrade", "0012_account_password")
    before = _triggers(engine)
    _alembic(engine, "upgrade", "0013_roles_audit")
    assert current_revision(engine) == "0013_roles_audit"
    assert SCHEMA_HEAD >= "0013_roles_audit"
    assert _triggers(engine) == before | {"audit_log_no_update"}
    _alembic(engine, "downgrade", "0012_account_password")
    assert _triggers(engine) == before
    with engine.connect() as connection:
        tables = set(sqlalchemy_inspect(connection).get_table_names())
    assert not tables & {"admins", "audit_log"}
    _alembic(engine, "upgrade", "head")
    engine.dispose()
