"""The whole CLI against the audit log, on SQLite and PostgreSQL. The command tree is walked (every group, the
lazy ones loaded), not a hand-picked list: each command must be classified in `backend.cli.effects` (acts or
reads, asks or not — and asks exactly when it has a `--yes`), and each must be run below or skipped for a
stated reason. Run against a stack without Telegram, a command that acts leaves exactly one new audit row, by
`cli:<OS user>` in the role `shell`, whose action names the change; one that reads leaves none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from backend.cli import cli
from backend.cli.base import actor
from backend.cli.effects import EFFECTS, Confirm
from backend.control_plane import ControlPlane
from celery_app import presence
from celery_app.presence import WorkerInfo
from tests.support.fake_telegram import session_for
from tests.support.stack import TEST_SECRET_KEY

HASH = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb"
OTHER_HASH = "0123456789abcdef0123456789abcdef"
PASSPHRASE = "correct horse battery staple"
# Commands the walk does not run, and why; each is covered where that is possible.
SKIPPED = {
    "accounts login": "needs a live worker to ask Telegram for a code; each step (the start, the code, the 2FA "
    "password) is its own audited call of backend.onboarding, one row each",
}
# Their worker is offline, or no worker is online to probe from: one row, recorded with its error.
# trust: no new key presented; rotate-key: w1 is offline
REFUSED = {"accounts restart", "accounts op", "proxies check", "workers trust", "workers rotate-key"}
# No backend running (doctor), no sandbox running (the sandbox's commands, which never touch the fleet): exit 1,
# no row.
READ_REFUSED = {
    "doctor",
    "sandbox status",
    "sandbox chat",
    "sandbox send",
    "sandbox flood",
    "sandbox revoke",
    "sandbox ban",
}


def walk(group: click.Group, ctx: click.Context, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, info_name=name, parent=ctx), f"{path} ")
        else:
            yield path, command


def commands() -> dict[str, click.Command]:
    return dict(walk(cli, click.Context(cli, info_name="run_cli.py")))


def test_every_command_is_classified_and_asks_exactly_when_it_takes_yes() -> None:
    found = commands()
    assert sorted(found) == sorted(EFFECTS), "classify new commands in backend/cli/effects.py"
    for path, command in found.items():
        effect = EFFECTS[path]
        takes_yes = any(param.name == "yes" for param in command.params)
        assert takes_yes == (effect.confirm is not Confirm.NEVER), path
        assert effect.acts or effect.confirm is Confirm.NEVER, path
    # The log is read, never edited, from the CLI: the one command about it only reads.
    assert [path for path in found if "audit" in path] == ["audit"] and not EFFECTS["audit"].acts


@dataclass(frozen=True)
class Step:
    path: str
    args: tuple[str, ...]
    action: str | None = None  # the audit row's action (a part of it), None for a read
    stdin: str | None = None


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch, database_url: str, redis_url: str) -> Iterator[ControlPlane]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("BOARD_HIDE_AFTER_REPORTS", "2")
    running = ControlPlane(redis_url, database_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
    yield running
    running.close()


def prepared(plane: ControlPlane, tmp_path: Path) -> dict[str, str]:
    """Workers w1 (three accounts) and w2, offline; an app, two proxies, a seeded board; what steps refer to."""
    from board.service import BoardService
    from common.crypto import SecretBox
    from config import BoardLimits
    from tests.test_board_admin import seed

    plane.fleet.add_worker("w1", "10.0.0.1", "test")
    plane.fleet.add_worker("w2", "10.0.0.2", "test")
    plane.apps.add(1001, HASH, actor="test")
    for n in (1, 2, 3):
        plane.accounts.import_session(
            "w1", session_string=session_for(f"+1555000000{n}"), phone=f"+1555000000{n}", actor="t"
        )
    plane.proxies.add(["socks5://10.0.0.9:1080", "socks5://10.0.0.8:1080"], "default", None, "test")
    board = seed(BoardService(plane.sessions, SecretBox(TEST_SECRET_KEY), BoardLimits(hide_after_reports=2)))
    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "away", "cooldown_minutes": 0}))
    return {
        "config": str(config),
        "export": str(tmp_path / "export"),
        "archive": str(tmp_path / "fleet.backup"),
        "session": session_for("+15550000009"),
        "flat_ad": board.ads["flat"],
        **{f"report_{name}": report for name, report in board.reports.items()},
    }


def steps(s: dict[str, str]) -> list[Step]:
    yes = "--yes"
    return [
        Step("list", ()),
        Step("show", ("w1",)),
        Step("doctor", ()),
        Step("accounts list", ()),
        Step("accounts show", ("1",)),
        Step("accounts ops", ("--account", "1")),
        Step("plugins list", ()),
        Step("plugins status", ()),
        Step("proxies list", ()),
        Step("proxies show", ("1",)),
        Step("proxies check", (), "proxy.check"),  # no worker online to probe from: refused, recorded
        Step("apps list", ()),
        Step("admins list", ()),
        Step("audit", ()),
        Step("board stats", ()),
        Step("board reports", ()),
        Step("board show", (s["report_cheap1"],)),
        Step("board hidden", ()),
        Step("add", ("w3", "--address", "10.0.0.3"), "worker.add"),
        Step("deactivate", ("w3",), "worker.deactivate"),
        Step("activate", ("w3",), "worker.activate"),
        Step("remove", ("w3", yes), "worker.remove"),
        Step("accounts start", ("1", "--when-back", "--no-wait"), "account.start"),
        Step("accounts stop", ("1",), "account.stop"),
        Step("accounts restart", ("1", "--no-wait"), "account.restart"),
        Step("accounts start-all", ("--worker", "w1", "--when-back", yes), "accounts.start_all"),
        Step("accounts stop-all", ("--worker", "w1", yes), "accounts.stop_all"),
        Step("accounts set-proxy", ("1", "2", "--proxy", "1", yes), "account.set_proxy"),
        Step("accounts op", ("check", "1", "--no-wait"), "operation.check"),
        Step("accounts export", ("1", "--format", "telethon-string", "--out", s["export"], yes), "account.export"),
        Step("accounts import", ("--worker", "w1", "--session-string", s["session"], "--phone", "+15550000009"),
             "account.import"),
        Step("plugins enable", ("autoreply", "1", "2", "--config", s["config"], yes), "plugin.enable"),
        Step("plugins disable", ("autoreply", "--worker", "w1", yes), "plugin.disable"),
        Step("proxies add", ("socks5://10.0.0.7:1080",), "proxy.add"),
        Step("proxies remove", ("1", "--reassign", yes), "proxy.remove"),
        Step("apps add", ("1002", "--hash-from-stdin", "--name", "spare"), "app.add", OTHER_HASH),
        Step("apps set", ("2", "--max-accounts", "5"), "app.change"),
        Step("apps remove", ("2", yes), "app.remove"),
        Step("admins add", ("5005", "--role", "operator", "--name", "Ann"), "admin.add"),
        Step("admins set-role", ("5005", "viewer"), "admin.set_role"),
        Step("admins remove", ("5005", yes), "admin.remove"),
        Step("board dismiss", (s["report_cheap1"],), "board.dismiss"),
        Step("board hide", (s["report_flat"],), "board.hide"),
        Step("board unhide", (s["flat_ad"],), "board.unhide"),
        Step("board ban", (s["report_invite"], yes), "board.ban"),
        Step("board reporter", (s["report_chat"], "--dismiss-all", yes), "board.dismiss_reporter"),
        Step("accounts move", ("3", "--to", "w2"), "account.move"),  # w2 is made to look online for it
        Step("accounts remove", ("3", yes), "account.remove"),
        Step("backup", ("--out", s["archive"], "--passphrase-from-stdin"), "backup", PASSPHRASE),
        Step("restore", (s["archive"], "--merge", "skip-existing", "--passphrase-from-stdin", yes), "restore",
             PASSPHRASE),
        Step("rekey", (yes,), "rekey"),
        Step("workers trust", ("w1", yes), "worker.trust_key"),
        Step("workers rotate-key", ("w1",), "worker.rotate_key"),
        Step("workers login", ("w2", yes), "worker.issue_login"),
        Step("sandbox status", ()),
        Step("sandbox chat", ("@demo01",)),
        Step("sandbox send", ("--to", "@demo01", "--text", "hi")),
        Step("sandbox flood", ("@demo01",)),
        Step("sandbox revoke", ("@demo01",)),
        Step("sandbox ban", ("@demo01",)),
    ]  # fmt: skip


def test_each_command_that_acts_leaves_one_audit_row_and_each_read_none(
    plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_CONTROL_FILE", str(tmp_path / "no-sandbox.json"))  # never a sandbox running here
    walk_steps = steps(prepared(plane, tmp_path))
    run_paths = [step.path for step in walk_steps]
    assert len(run_paths) == len(set(run_paths))
    assert sorted([*run_paths, *SKIPPED]) == sorted(EFFECTS), "run each command below, or say why not in SKIPPED"
    me = actor()
    runner = CliRunner()
    for step in walk_steps:
        assert EFFECTS[step.path].acts == (step.action is not None), step.path
        if step.path == "accounts move":
            info = WorkerInfo("w2", "10.0.0.2", "host", 42, "0.1.0", presence.server_time(plane.redis) - 5, "inst")
            presence.register(plane.redis, info, 60)
        newest = plane.audit.entries(limit=1)
        last_id = newest[0].id if newest else 0
        result = runner.invoke(cli, [*step.path.split(), *step.args], input=step.stdin, catch_exceptions=False)
        if step.path == "accounts move":
            presence.unregister(plane.redis, "w2", "inst")
        said = f"{step.path}: exit {result.exit_code}\n{result.stdout}{result.stderr}"
        new = [entry for entry in plane.audit.entries(limit=20) if entry.id > last_id]
        if step.action is None:
            assert new == [] and (step.path in READ_REFUSED or result.exit_code == 0), said
            continue
        assert step.path in REFUSED or result.exit_code == 0, said
        assert len(new) == 1, f"{said}\n{new}"
        [row] = new
        assert (row.actor, row.role) == (me, "shell") and step.action in row.action, f"{said}\n{row}"
        assert step.path in REFUSED or row.outcome == "ok", f"{said}\n{row}"
