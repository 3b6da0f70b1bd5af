"""`run_cli.py admins …` and `run_cli.py audit`, on SQLite and PostgreSQL: admins added, listed, changed and
removed (with `--json` parsed and the exit codes), owners by ADMIN_IDS listed but changed only there; every
change recorded as `cli:<OS user>` in the role `shell` under `--as NAME` (else the OS user); the log read back
newest first and filtered by time, actor, target and action."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from backend.cli import cli
from backend.cli.audit import _targets
from backend.cli.base import actor, os_user
from database.audit import record_audit
from database.engine import open_database

ME = actor()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> Iterator[str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    yield database_url


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input_text, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def ok_json(*args: str) -> object:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def entries(*filters: str) -> list[dict[str, object]]:
    found = ok_json("audit", *filters)
    assert isinstance(found, list)
    return found


# ---- admins -------------------------------------------------------------------------------------------------


def test_admins_are_added_listed_changed_and_removed(env: str) -> None:
    added = ok_json("admins", "add", "5005", "--role", "Operator", "--name", "Ann")
    assert added == {
        "tg_id": 5005,
        "role": "operator",
        "name": "Ann",
        "source": "admins",
        "added_by": ME,
        "added_at": added["added_at"],  # type: ignore[index]
    }
    code, out, _ = run("admins", "add", "6006", "--role", "moderator")
    assert (code, out) == (0, "admin 6006 (moderator) added\n")
    code, _, err = run("admins", "add", "5005", "--role", "viewer")
    assert code == 1 and err == "Error: 5005 is an admin already\n"
    for bad in (["0", "--role", "viewer"], ["abc", "--role", "viewer"], ["7007", "--role", "king"], ["7007"]):
        code, _, err = run("admins", "add", *bad)
        assert code == 2 and "Usage:" in err, bad
        assert "integer range" not in err and ("is not a Telegram user id" in err or bad[0] == "7007"), err
    assert [(a["tg_id"], a["role"], a["source"]) for a in ok_json("admins", "list")] == [  # type: ignore[union-attr]
        (5005, "operator", "admins"),
        (6006, "moderator", "admins"),
    ]
    code, out, _ = run("admins", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["TG", "ID", "ROLE", "NAME", "SOURCE", "ADDED", "BY", "ADDED"]
    assert lines[1].split()[:5] == ["5005", "operator", "Ann", "admins", ME]

    changed = ok_json("admins", "set-role", "5005", "VIEWER")
    assert changed["role"] == "viewer"  # type: ignore[index]
    code, out, _ = run("admins", "set-role", "6006", "operator")
    assert (code, out) == (0, "admin 6006 (operator): role operator\n")
    code, _, err = run("admins", "set-role", "7007", "viewer")
    assert code == 1 and err == "Error: 7007 is not an admin\n"
    assert run("admins", "set-role", "5005", "king")[0] == 2

    code, _, err = run("admins", "remove", "5005")  # no terminal, no --yes: refused, nothing changed
    assert code == 1 and "Remove admin 5005 (Ann, viewer)?" in err and "--yes" in err
    assert [a["tg_id"] for a in ok_json("admins", "list")] == [5005, 6006]  # type: ignore[union-attr]
    code, out, _ = run("admins", "remove", "5005", "--yes")
    assert (code, out) == (0, "admin 5005 removed\n")
    code, _, err = run("admins", "remove", "5005", "--yes")
    assert code == 1 and err == "Error: 5005 is not an admin\n"
    assert [a["tg_id"] for a in ok_json("admins", "list")] == [6006]  # type: ignore[union-attr]
    actions = [(e["action"], e["targets"], e["outcome"]) for e in entries("--actor", ME)]
    assert actions == [
        ("admin.remove", ["admin:5005"], "ok"),
        ("admin.set_role", ["admin:7007"], "error:admin_not_found"),
        ("admin.set_role", ["admin:6006"], "ok"),
        ("admin.set_role", ["admin:5005"], "ok"),
        ("admin.add", ["admin:5005"], "error:admin_exists"),
        ("admin.add", ["admin:6006"], "ok"),
        ("admin.add", ["admin:5005"], "ok"),
    ]


def test_owners_by_admin_ids_are_listed_and_changed_only_there(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_IDS", "1001,1002")
    ok_json("admins", "add", "5005", "--role", "viewer")
    listed = ok_json("admins", "list")
    assert [(a["tg_id"], a["role"], a["source"], a["added_by"]) for a in listed] == [  # type: ignore[union-attr]
        (1001, "owner", "ADMIN_IDS", "ADMIN_IDS"),
        (1002, "owner", "ADMIN_IDS", "ADMIN_IDS"),
        (5005, "viewer", "admins", ME),
    ]
    code, out, _ = run("admins", "list")
    assert code == 0 and out.splitlines()[1].split()[:4] == ["1001", "owner", "-", "ADMIN_IDS"]
    for args in (["add", "1001", "--role", "viewer"], ["set-role", "1002", "viewer"], ["remove", "1001"]):
        code, _, err = run("admins", *args)
        assert code == 1 and "is an owner by ADMIN_IDS: change that setting to change them" in err, args
        assert err.count("\n") == 1
    assert ok_json("admins", "list") == listed
    code, _, err = run("admins", "list")
    assert code == 0
    monkeypatch.setenv("ADMIN_IDS", "not-a-number")
    code, _, err = run("admins", "list")
    assert code == 78 and err.startswith("config error: ADMIN_IDS")


# ---- who acted ----------------------------------------------------------------------------------------------


def test_as_name_is_recorded_beside_the_os_user(env: str) -> None:
    assert run("--as", "deploy-bot", "add", "w1", "--address", "10.0.0.1")[0] == 0
    assert run("deactivate", "w1")[0] == 0
    [deactivated, added] = entries("--target", "worker:w1")
    assert (added["action"], added["actor"], added["actor_name"], added["role"]) == (
        "worker.add",
        ME,
        "deploy-bot",
        "shell",
    )
    assert (deactivated["action"], deactivated["actor"], deactivated["actor_name"], deactivated["role"]) == (
        "worker.deactivate",
        ME,
        os_user(),
        "shell",
    )
    assert [e["action"] for e in entries("--actor", "deploy")] == ["worker.add"]
    for bad in ("", "   ", "x" * 65, "evil\x1b[31m", "a\u202eb"):
        code, _, err = run("--as", bad, "list")
        assert code == 2 and "--as" in err, repr(bad)
    assert len(entries()) == 2  # refused names ran nothing


# ---- reading the log ----------------------------------------------------------------------------------------


def test_the_log_is_read_newest_first_and_filtered(env: str) -> None:
    _engine, sessions = open_database(env)
    with sessions.begin() as session:  # an old row, as the backend records its own actions
        record_audit(session, "backend", "worker.offline", ["worker:w1"], at=datetime(2020, 1, 1, tzinfo=UTC))
    _engine.dispose()
    run("add", "w1", "--address", "10.0.0.1")
    run("--as", "nightly", "add", "w2", "--address", "10.0.0.2")
    run("admins", "add", "5005", "--role", "viewer")
    run("deactivate", "w1")
    whole = entries()
    assert [e["action"] for e in whole] == [
        "worker.deactivate",
        "admin.add",
        "worker.add",
        "worker.add",
        "worker.offline",
    ]
    assert [e["id"] for e in whole] == sorted((e["id"] for e in whole), reverse=True)  # type: ignore[type-var]
    assert set(whole[0]) == {"id", "at", "actor", "actor_name", "role", "action", "targets", "params", "outcome"}
    assert whole[-1]["role"] == "system" and whole[-1]["at"].startswith("2020-01-01")  # type: ignore[union-attr]
    assert whole[2]["params"] == {"address": "10.0.0.2"} and whole[2]["actor_name"] == "nightly"

    assert [e["action"] for e in entries("--target", "worker:w1")] == [
        "worker.deactivate",
        "worker.add",
        "worker.offline",
    ]
    assert entries("--target", "worker:w") == []  # a target as a whole word
    assert [e["targets"] for e in entries("--actor", "nightly")] == [["worker:w2"]]
    assert len(entries("--actor", ME)) == 4 and len(entries("--actor", "backend")) == 1
    assert [e["action"] for e in entries("--action", "admin.")] == ["admin.add"]
    assert len(entries("--since", "1h")) == 4
    assert len(entries("--since", "2019-12-31")) == 5 and entries("--since", "2999-01-01") == []
    assert len(entries("--since", "2020-06-01T00:00:00+00:00")) == 4
    assert [e["action"] for e in entries("--since", "1h", "--target", "worker:w1")] == [
        "worker.deactivate",
        "worker.add",
    ]
    assert [e["id"] for e in entries("--limit", "2")] == [e["id"] for e in whole[:2]]
    assert [e["id"] for e in entries("--before", str(whole[1]["id"]))] == [e["id"] for e in whole[2:]]
    for bad in (["--since", "soon"], ["--since", "2026-13-45"], ["--limit", "0"], ["--before", "x"]):
        code, out, err = run("audit", *bad)
        assert code == 2 and out == "" and "Usage:" in err, bad
    code, _, err = run("audit", "--since", "soon")
    assert "'soon' is not a time span (30m, 1h, 7d) or a date (2026-12-01)" in err

    code, out, _ = run("audit", "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "TIME", "UTC", "ACTOR", "ROLE", "ACTION", "TARGETS", "OUTCOME"]
    assert lines[1].split()[3:] == [ME, "shell", "worker.deactivate", "worker:w1", "ok"]
    assert f"{ME} (nightly)" in lines[3]
    assert lines[-1] == f"older entries: the same command with --before {whole[2]['id']}"
    code, out, _ = run("audit", "--actor", "nobody")
    assert (code, out) == (0, "no audit entries match\n")
    assert len(entries()) == 5  # reading the log records nothing


def test_many_targets_are_shown_as_the_first_few_and_a_count() -> None:
    assert _targets(()) == "-"
    assert _targets(("account:1", "account:2")) == "account:1 account:2"
    assert _targets(tuple(f"account:{i}" for i in range(1, 8))) == "account:1 account:2 account:3 +4"
