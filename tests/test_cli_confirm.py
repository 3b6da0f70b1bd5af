"""Confirmations, on SQLite and PostgreSQL: what reaches many accounts or cannot be undone asks first, naming the
count ("Stop 3 accounts on w1?"). Without a terminal and without `--yes` it refuses in one line that says so and
changes nothing — no state, no audit row; `--yes` does it; on a terminal "n" cancels and "y" proceeds. Single
reversible actions do not ask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.cli import cli
from backend.control_plane import ControlPlane
from celery_app import presence
from celery_app.presence import WorkerInfo
from database.models import DesiredState
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY

HASH = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb"
OTHER_HASH = "0123456789abcdef0123456789abcdef"


def phone(n: int) -> str:
    return f"+1555{n:07d}"


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str) -> Iterator[ControlPlane]:
    """Workers w1 (three accounts, wanted running) and w2 (none), both offline; an app in the pool."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    running = ControlPlane(redis_url, database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
    running.fleet.add_worker("w1", "10.0.0.1", "test")
    running.fleet.add_worker("w2", "10.0.0.2", "test")
    running.apps.add(1001, HASH, actor="test")
    for n in (1, 2, 3):
        view = running.accounts.import_session("w1", session_string=session_for(phone(n)), phone=phone(n), actor="t")
        running.accounts.start(view.id, "test", when_back=True)
    yield running
    running.close()


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input_text, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def rows(plane: ControlPlane) -> int:
    return len(plane.audit.entries(limit=1000))


def desired(plane: ControlPlane) -> dict[int, str]:
    return {view.id: view.desired_state for view in plane.accounts.list_accounts()}


def refused(plane: ControlPlane, args: list[str], *phrases: str) -> None:
    """Without a terminal and without --yes: exit 1, one line naming the count and --yes, nothing changed."""
    before_rows, before_state = rows(plane), desired(plane)
    code, out, err = run(*args)
    assert code == 1 and out == "", (args, out, err)
    assert err.count("\n") == 1 and "Not done: no terminal to confirm on; pass --yes to confirm" in err, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    assert rows(plane) == before_rows and desired(plane) == before_state


def test_stop_all_names_the_count_and_without_yes_changes_nothing(plane: ControlPlane) -> None:
    refused(plane, ["accounts", "stop-all", "--worker", "w1"], "Stop 3 accounts on w1?")
    before = rows(plane)
    code, out, err = run("accounts", "stop-all", "--worker", "w1", "--yes")
    assert code == 0, err
    assert out.count("is not running (its worker is offline)") == 3
    assert set(desired(plane).values()) == {"stopped"}
    [row] = plane.audit.entries(limit=1000)[: rows(plane) - before]
    assert row.action == "accounts.stop_all" and row.actor.startswith("cli") and row.role == "shell"
    assert {"worker:w1", "account:1", "account:2", "account:3"} <= set(row.targets)
    code, out, _ = run("accounts", "stop-all", "--worker", "w2")  # nothing there: nothing to confirm
    assert (code, out) == (0, "")
    assert run("accounts", "stop-all", "--worker", "ghost")[:1] == (1,)


def test_on_a_terminal_no_cancels_and_yes_proceeds(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.cli.base.can_ask", lambda: True)
    before_rows, before_state = rows(plane), desired(plane)
    code, out, err = run("accounts", "stop-all", "--worker", "w1", input_text="n\n")
    assert code == 1 and out == ""
    assert "Stop 3 accounts on w1? [y/N]: " in err and "cancelled: nothing changed" in err
    assert rows(plane) == before_rows and desired(plane) == before_state
    code, _, err = run("accounts", "stop-all", "--worker", "w1", input_text="\n")  # the default is no
    assert code == 1 and rows(plane) == before_rows
    code, out, err = run("accounts", "stop-all", "--worker", "w1", input_text="y\n")
    assert code == 0 and "Stop 3 accounts on w1? [y/N]: " in err
    assert set(desired(plane).values()) == {"stopped"} and rows(plane) == before_rows + 1


def test_start_all_counts_what_it_starts_and_asks_nothing_it_would_refuse(plane: ControlPlane) -> None:
    plane.accounts.bulk("w1", DesiredState.STOPPED, "test")
    code, _, err = run("accounts", "start-all", "--worker", "w1")  # offline, no --when-back: refused, not asked
    assert code == 1 and "offline" in err and "--yes" not in err
    refused(
        plane, ["accounts", "start-all", "--worker", "w1", "--when-back"], "Start 3 accounts on w1 when it is back?"
    )
    assert run("accounts", "start-all", "--worker", "w1", "--when-back", "--yes")[0] == 0
    assert set(desired(plane).values()) == {"running"}


def test_single_reversible_actions_do_not_ask(plane: ControlPlane, tmp_path: Path) -> None:
    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "away", "cooldown_minutes": 0}))
    info = WorkerInfo("w2", "10.0.0.2", "host", 42, "0.1.0", presence.server_time(plane.redis) - 5, "inst")
    presence.register(plane.redis, info, 60)
    before = rows(plane)
    for args in (
        ["accounts", "stop", "1"],
        ["accounts", "start", "1", "--when-back", "--no-wait"],
        ["deactivate", "w1"],
        ["activate", "w1"],
        ["add", "w3", "--address", "10.0.0.3"],
        ["plugins", "enable", "autoreply", "2", "--config", str(config)],
        ["plugins", "disable", "autoreply", "2", "3"],  # on one of them only: one account
        ["accounts", "set-proxy", "2", "--none"],
        ["accounts", "move", "3", "--to", "w2"],
    ):
        code, _, err = run(*args)
        assert code == 0 and "--yes" not in err, (args, err)
    assert rows(plane) == before + 9


def test_removals_ask_naming_what_goes_unless_the_service_refuses_anyway(plane: ControlPlane) -> None:
    refused(
        plane,
        ["accounts", "remove", "1"],
        "Remove account 1 (+1 *** ***-00-01) and wipe its session?",
        "cannot be undone",
    )
    assert run("accounts", "remove", "1", "--yes")[0] == 0
    assert sorted(desired(plane)) == [2, 3]
    refused(plane, ["remove", "w2"], "Remove worker 'w2' (10.0.0.2)?")
    code, _, err = run("remove", "w1")  # it runs accounts: the service says why not, nothing asked
    assert code == 1 and "--yes" not in err
    assert run("remove", "w2", "--yes")[0] == 0
    plane.apps.add(1002, OTHER_HASH, name="spare", actor="test")
    refused(plane, ["apps", "remove", "2"], "Remove app 2 (API ID 1002, spare) from the pool?")
    code, _, err = run("apps", "remove", "1")  # it carries accounts
    assert code == 1 and "--yes" not in err and "still carries" in err
    assert run("apps", "remove", "2", "--yes")[0] == 0


def test_many_accounts_are_counted_for_plugins_operations_proxies_and_exports(
    plane: ControlPlane, tmp_path: Path
) -> None:
    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "away", "cooldown_minutes": 0}))
    enable = ["plugins", "enable", "autoreply", "--config", str(config)]
    refused(plane, [*enable, "--worker", "w1"], "Enable plugin autoreply for 3 accounts on w1?")
    refused(plane, [*enable, "1", "2"], "Enable plugin autoreply for 2 accounts?")
    assert run(*enable, "--worker", "w1", "--yes")[0] == 0
    refused(plane, ["plugins", "disable", "autoreply", "--worker", "w1"], "Disable plugin autoreply for 3 accounts")
    assert run("plugins", "disable", "autoreply", "1", "2", "--yes")[0] == 0

    refused(plane, ["accounts", "op", "check", "--worker", "w1", "--no-wait"], "Run check on 3 accounts on w1?")
    refused(plane, ["accounts", "op", "check", "--all", "--no-wait"], "Run check on 3 accounts across the fleet?")
    refused(
        plane,
        ["accounts", "op", "terminate-others", "1", "2", "--no-wait"],
        "Run terminate-others on 2 accounts? Every other session of theirs ends: that cannot be undone.",
    )
    assert plane.operations.recent(1) == []

    out = tmp_path / "export"
    refused(
        plane,
        ["accounts", "export", "--worker", "w1", "--format", "telethon-string", "--out", str(out)],
        f"Export 3 accounts as telethon-string into {out}?",
        "live credentials",
    )
    refused(plane, ["accounts", "export", "2", "--format", "telethon-string", "--out", str(out)], "Export 1 account")
    assert not out.exists()

    added = plane.proxies.add(["socks5://10.0.0.9:1080", "socks5://10.0.0.8:1080"], "default", None, "test")
    first, second = (item.id for item in added)
    refused(plane, ["accounts", "set-proxy", "1", "2", "--proxy", str(first)], f"Pin 2 accounts to proxy {first}?")
    assert run("accounts", "set-proxy", "1", "2", "--proxy", str(first), "--yes")[0] == 0
    code, _, err = run("proxies", "remove", str(first))  # accounts use it: refused by the service, not asked
    assert code == 1 and "--yes" not in err
    refused(
        plane,
        ["proxies", "remove", str(first), "--reassign"],
        f"Remove proxy {first} (socks5://10.0.0.9:1080) and move its 2 accounts to other proxies of group default?",
    )
    code, out_text, err = run("proxies", "remove", str(first), "--reassign", "--yes")
    assert code == 0, err
    assert out_text.count(f"-> #{second} socks5://10.0.0.8:1080") == 2


def test_rekey_counts_the_secrets_it_rewrites(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", f"{'n' * 40},{TEST_SECRET_KEY}")  # rotating: the note on one key is not said
    refused(plane, ["rekey"], "Re-encrypt every stored secret (3 accounts, 1 app, 0 proxies, the board's users)")
    code, out, err = run("rekey", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["accounts"] == 3
