"""Workers' own Redis logins (backend/worker_logins.py) as people meet them, against a real redis-server: the CLI
(`add --issue-login`, `workers login`, `remove`, `show`, `doctor`), and the bot's worker card and its add-worker
flow. What a login reaches is tested in tests/test_worker_logins.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis
from redis.exceptions import AuthenticationError

from backend.cli import cli
from backend.control_plane import ControlPlane
from backend.doctor import logins_check
from common.redis_target import open_redis
from tests.support.bot_harness import BotHarness
from tests.support.stack import TEST_SECRET_KEY
from tests.test_worker_logins import _no_leftover_users, as_worker, limited_url, plane

FIXTURES = (_no_leftover_users, plane)

ADMIN = 111


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str) -> dict[str, str]:
    env = {"REDIS_URL": redis_url, "DATABASE_URL": sqlite_url, "SECRET_KEY": TEST_SECRET_KEY}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- the CLI --------------------------------------------------------------------------------------------------


def test_add_with_issue_login_prints_a_redis_url_that_logs_in_as_the_worker(
    cli_env: dict[str, str], redis_url: str
) -> None:
    result = run("add", "fra-1", "--address", "10.0.0.5", "--issue-login")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    urls = [line.removeprefix("REDIS_URL=") for line in lines if line.startswith("REDIS_URL=")]
    assert len(urls) == 2 and urls[0] == urls[1]  # the line, and the same in the .env block
    assert "WORKER_NAME=fra-1" in lines and not [line for line in lines if "SECRET_KEY" in line]
    assert "stored nowhere and shown only now" in result.stderr
    with as_worker(urls[0]) as worker:
        assert worker.acl_whoami() == "fleet-worker-fra-1"
        assert worker.set("fleet:worker:fra-1:owner", "me")
    shown = json.loads(run("show", "fra-1", "--json").stdout)
    assert shown["own_login"] is True
    assert run("add", "ams-1", "--address", "10.0.0.6").exit_code == 0
    assert json.loads(run("show", "ams-1", "--json").stdout)["own_login"] is False
    assert "workers login ams-1" in run("show", "ams-1").stdout
    # Removing the worker deletes its login.
    assert run("remove", "fra-1", "--yes").exit_code == 0
    with Redis.from_url(redis_url, decode_responses=True) as admin:
        assert admin.acl_getuser("fleet-worker-fra-1") is None
    with pytest.raises(AuthenticationError):
        as_worker(urls[0]).ping()


def test_workers_login_asks_first_and_rotates_with_yes(cli_env: dict[str, str], redis_url: str) -> None:
    assert run("add", "fra-1", "--address", "10.0.0.5").exit_code == 0
    refused_run = run("workers", "login", "fra-1")  # no terminal to confirm on, no --yes
    assert refused_run.exit_code == 1 and "pass --yes" in refused_run.stderr and not refused_run.stdout
    with Redis.from_url(redis_url, decode_responses=True) as admin:
        assert admin.acl_getuser("fleet-worker-fra-1") is None
    first = json.loads(run("workers", "login", "fra-1", "--yes", "--json").stdout)
    assert set(first) == {"worker", "redis_url", "env"} and first["worker"] == "fra-1"
    assert f"REDIS_URL={first['redis_url']}" in first["env"]
    again = run("workers", "login", "fra-1")  # it has one now: the question says the old one stops working
    assert again.exit_code == 1 and "stops working" in again.stderr
    second = json.loads(run("workers", "login", "fra-1", "--yes", "--json").stdout)
    with pytest.raises(AuthenticationError):
        as_worker(first["redis_url"]).ping()
    assert as_worker(second["redis_url"]).acl_whoami() == "fleet-worker-fra-1"
    assert run("workers", "login", "nobody", "--yes").exit_code == 1


def test_doctor_names_the_workers_on_the_shared_login(
    cli_env: dict[str, str], plane: ControlPlane, redis_url: str
) -> None:
    plane.worker_logins.issue("w1", "test")
    result = run("doctor", "--json")  # exit 1: no backend runs here, which is not what this test looks at
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "worker logins")
    assert check["ok"] is True and check["warning"] is True
    assert check["details"] == {"shared": ["w10", "w2"]} and "2 of 3 worker(s)" in check["message"]
    text = run("doctor").stdout
    assert "WARN  worker logins" in text and "workers login w2" in text
    # A control plane whose login may not run ACL commands says so, once, and fails nothing.
    limited = open_redis(limited_url(redis_url), decode_responses=True)
    said = logins_check(plane.engine, limited)
    assert said.ok and said.warning and "cannot tell" in said.message and not said.lines
    limited.close()
    for name in ("w2", "w10"):
        plane.worker_logins.issue(name, "test")
    assert logins_check(plane.engine, plane.redis).message == "every worker has its own Redis login"


# --- the bot --------------------------------------------------------------------------------------------------


@pytest.fixture
def harness(redis_url: str, sqlite_url: str) -> Iterator[BotHarness]:
    running = BotHarness(redis_url, sqlite_url, frozenset({ADMIN}))
    yield running
    running.close()


def test_the_bot_offers_the_login_when_adding_a_worker_and_shows_it_once(harness: BotHarness) -> None:
    chat = harness.chat(ADMIN)
    chat.send("/workers")
    chat.click("Добавить воркер")
    chat.send("fra-1")
    chat.send("198.51.100.10")
    harness.core.wait_for(lambda c: c.method == "sendMessage" and "fra-1</b> — 🔴" in c.params.get("text", ""))
    assert "🔓 Общий логин Redis" in chat.text() and "🔐 Логин Redis" in chat.buttons()
    chat.click("Логин Redis")
    assert "Выдать воркеру <b>fra-1</b> свой логин Redis?" in chat.text()
    assert "уже есть" not in chat.text() and chat.buttons() == ["🔐 Выдать", "✖️ Отмена"]
    chat.click("Выдать")
    shown = chat.text()
    assert "Показывается только сейчас" in shown and "WORKER_NAME=fra-1" in shown and "SECRET_KEY=" not in shown
    url = shown.split("<code>REDIS_URL=")[1].split("</code>")[0]
    with as_worker(url) as worker:
        assert worker.acl_whoami() == "fleet-worker-fra-1"
    chat.click("Назад")
    assert "🔐 Свой логин Redis" in chat.text()
    chat.click("Логин Redis")
    assert "нынешний пароль сразу перестанет работать" in chat.text()  # issuing again is a rotation


def test_the_worker_card_says_which_login_a_worker_uses(harness: BotHarness) -> None:
    fleet = harness.services.fleet
    fleet.add_worker("own", "10.0.0.1", "test")
    fleet.add_worker("shared", "10.0.0.2", "test")
    assert harness.services.logins is not None
    harness.services.logins.issue("own", "test")
    chat = harness.chat(ADMIN, language="en")
    chat.send("/workers")
    chat.click("own")
    assert "🔐 Own Redis login" in chat.text()
    chat.click("Back")
    chat.click("shared")
    assert "🔓 Shared Redis login" in chat.text() and "🔐 Redis login" in chat.buttons()
