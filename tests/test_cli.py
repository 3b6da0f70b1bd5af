"""The CLI as an operator uses it: exit codes, one JSON document, clear one-line errors."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from redis import Redis

from backend.cli import cli
from celery_app import keys, presence
from celery_app.presence import WorkerInfo
from scripts.embedded_redis import free_port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str) -> dict[str, str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return {"REDIS_URL": redis_url, "DATABASE_URL": sqlite_url}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _live_worker(redis: Redis, name: str) -> None:
    info = WorkerInfo(name, "10.1.1.1", "host", 42, "0.1.0", presence.server_time(redis) - 75, "inst")
    presence.register(redis, info, 60)


def test_list_json_is_one_document_with_the_promised_fields(env: dict[str, str], redis_client: Redis) -> None:
    assert run("add", "pre", "--address", "198.51.100.7")[0] == 0
    _live_worker(redis_client, "live")
    code, out, _err = run("list", "--json")
    assert code == 0
    workers = {w["name"]: w for w in json.loads(out)}
    assert workers["pre"]["status"] == "offline" and workers["pre"]["last_heartbeat"] is None
    assert workers["pre"]["address"] == "198.51.100.7" and workers["pre"]["accounts"] == 0
    # Not yet recorded by a backend, but heartbeating: shown live.
    assert workers["live"]["status"] == "online" and workers["live"]["is_active"] is True
    for field in ("name", "address", "status", "is_active", "last_heartbeat", "accounts"):
        assert field in workers["pre"]


def test_human_list_is_an_aligned_table(env: dict[str, str], redis_client: Redis) -> None:
    run("add", "pre", "--address", "198.51.100.7")
    _live_worker(redis_client, "live")
    code, out, _ = run("list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "NAME", "ADDRESS", "ACCOUNTS", "VERSION", "HEARTBEAT"]
    assert lines[1].startswith("🟢 online") and re.search(r"last seen \d+ s ago$", lines[1])
    assert lines[2].startswith("🔴 offline") and "last seen never" in lines[2]
    assert lines[1].index("live") == lines[2].index("pre")  # columns line up
    assert "1 online, 1 offline" in out


def test_show_unknown_worker_exits_1(env: dict[str, str]) -> None:
    code, _out, err = run("show", "ghost")
    assert code == 1 and "worker 'ghost' not found" in err
    for command in ("activate", "deactivate", "remove"):
        code, _out, err = run(command, "ghost")
        assert code == 1 and "worker 'ghost' not found" in err


def test_show_json_includes_recent_events(env: dict[str, str]) -> None:
    run("add", "srv", "--address", "a.example")
    run("deactivate", "srv")
    code, out, _ = run("show", "srv", "--json")
    document = json.loads(out)
    assert code == 0 and document["is_active"] is False
    assert [e["kind"] for e in document["events"]] == ["worker.deactivated", "worker.added"]
    assert document["events"][0]["actor"].startswith("cli")


def test_add_validates_and_refuses_duplicates(env: dict[str, str]) -> None:
    code, _, err = run("add", "bad name", "--address", "x")
    assert code == 1 and "invalid worker name" in err
    code, _, err = run("add", "ok", "--address", " ")
    assert code == 1 and "invalid server address" in err
    assert run("add", "ok", "--address", "1.2.3.4")[0] == 0
    code, _, err = run("add", "ok", "--address", "1.2.3.4")
    assert code == 1 and "already exists" in err
    code, _, err = run("add", "noaddr")
    assert code == 2 and "Missing option '--address'" in err


def test_remove_refuses_an_online_worker(env: dict[str, str], redis_client: Redis) -> None:
    run("add", "busy", "--address", "a")
    _live_worker(redis_client, "busy")
    code, _, err = run("remove", "busy")
    assert code == 1 and "is online" in err
    presence.unregister(redis_client, "busy", "inst")
    assert run("remove", "busy", "--yes")[0] == 0
    assert not redis_client.exists(keys.worker_info("busy"))
    assert json.loads(run("list", "--json")[1]) == []


def test_bad_arguments_exit_2_with_usage(env: dict[str, str]) -> None:
    code, _, err = run("list", "--bogus")
    assert code == 2 and "Usage:" in err
    code, _, err = run("show")
    assert code == 2 and "Missing argument 'NAME'" in err
    code, _, err = run("lst")  # commands are imported when used; a misspelt one is still matched against all
    assert code == 2 and "No such command 'lst'. Did you mean 'list'?" in err
    code, _, err = run("accounts", "imprt")
    assert code == 2 and "Did you mean 'import'?" in err


def test_unreachable_redis_exits_69_naming_it(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    code, out, err = run("list", "--json")
    assert code == 69 and out == ""
    assert err.startswith("error: Redis unreachable at redis://127.0.0.1:") and err.count("\n") == 1


def test_unreachable_database_exits_69_naming_it(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://fleet:secret@127.0.0.1:{free_port()}/fleet")
    code, _out, err = run("list")
    assert code == 69
    assert err.startswith("error: database unreachable at postgresql+psycopg://fleet:***@127.0.0.1:")
    assert "secret" not in err


def test_bad_config_exits_78_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_OFFLINE_AFTER", "soon")
    code, _out, err = run("list")
    assert code == 78
    assert err == "config error: WORKER_OFFLINE_AFTER must be a positive number of seconds, got 'soon'\n"


def test_doctor_prints_each_problem(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    code, out, _err = run("doctor")
    assert code == 1
    assert "FAIL  secret" in out and "SECRET_KEY is not set" in out
    assert "FAIL  backend" in out and "no backend running" in out
    assert "ok    database" in out and "ok    redis" in out
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, out, _err = run("doctor")
    assert code == 1 and "FAIL  redis" in out and "Redis unreachable" in out
