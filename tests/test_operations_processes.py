"""Account operations end to end: real workers (fake Telegram), backend, CLI and Redis, as the README runs them."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from redis import Redis

from tests.support.fake_password import password_matches
from tests.support.fake_telegram import session_for
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import API_HASH, accounts, import_account, online
from tests.test_manager import Script

pytestmark = pytest.mark.processes
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00\x00\x00\x02\x00" + b"\x00" * 64


def fake_account(redis: Redis, phone: str) -> dict:
    return json.loads(redis.get(f"fake:account:{phone}") or "{}")


def test_check_across_a_worker_with_progress_results_and_the_verdict_kept(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    telegram.set("+15550003001", account={"sessions": 2, "spam": "free", "premium": True})
    telegram.set("+15550003002", account={"spam": "limited"})
    telegram.set("+15550003003", connect="banned")
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    ids = [import_account(stack, "w1", phone) for phone in ("+15550003001", "+15550003002", "+15550003003")]
    assert stack.cli("accounts", "start", str(ids[0])).returncode == 0  # one running, two not
    result = stack.cli("accounts", "op", "check", "--worker", "w1", "--yes", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3" in result.stderr  # the progress bar, on stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "✅ done" in lines[str(ids[0])] and "ok · spam: free · 2 other sessions · premium" in lines[str(ids[0])]
    assert "limited · spam: limited" in lines[str(ids[1])], stack.log_of(stack.processes[1])[-3000:]
    assert "banned" in lines[str(ids[2])]
    listed = accounts(stack)
    assert [listed[i]["check"]["verdict"] for i in ids] == ["ok", "limited", "banned"]
    assert listed[ids[0]]["status"] == "running" and listed[ids[1]]["status"] == "stopped"  # left as they were
    table = stack.cli("accounts", "list").stdout
    assert "CHECK" in table and "✅ ok" in table and "⚠️ limited" in table
    assert redis_client.lrange("fake:violations", 0, -1) == []
    # The worse verdict reached the fleet's history, where the bot's alerts read it.
    shown = stack.cli_json("accounts", "show", str(ids[1]))
    assert shown["check"]["verdict"] == "limited"
    again = stack.cli("accounts", "op", "check", str(ids[0]), "--json")
    document = json.loads(again.stdout)
    assert document["operation"] == "check" and document["operations"][0]["result"]["verdict"] == "ok"


def test_profile_sessions_and_2fa_from_the_cli_with_telegrams_refusals_passed_on(
    stack: Stack, telegram: Script, redis_client: Redis, tmp_path: Path
) -> None:
    phone = "+15550003011"
    telegram.set(phone, account={"sessions": 2, "taken": ["somebody"]})
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", phone)
    photo = tmp_path / "me.png"
    photo.write_bytes(PNG)
    changed = stack.cli(
        "accounts", "op", "profile", str(account_id), "--first-name", "Anna", "--bio", "hi", "--photo", str(photo)
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "changed first_name, bio, photo" in changed.stdout
    state = fake_account(redis_client, phone)
    assert state["first_name"] == "Anna" and state["bio"] == "hi" and state["photos"] == 1
    taken = stack.cli("accounts", "op", "profile", str(account_id), "--username", "somebody", "--last-name", "K")
    assert taken.returncode == 1 and "already taken" in taken.stdout and "1 of 1 failed" in taken.stderr
    assert fake_account(redis_client, phone).get("last_name") != "K"  # nothing changed
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    refused = stack.cli("accounts", "op", "profile", str(account_id), "--photo", str(not_image))
    assert refused.returncode == 1 and "not a JPEG or PNG" in refused.stderr
    sessions = stack.cli("accounts", "op", "sessions", str(account_id))
    assert "2 other sessions" in sessions.stdout, fake_account(redis_client, phone)
    assert "LAST ACTIVE" in sessions.stdout and "this (the fleet)" in sessions.stdout
    assert "Pixel 7" in sessions.stdout and "Germany, Berlin" in sessions.stdout and "198.51.100" not in sessions.stdout
    ended = stack.cli("accounts", "op", "terminate-others", str(account_id))
    assert "ended 2 other sessions" in ended.stdout
    assert fake_account(redis_client, phone)["sessions"] == []
    report = stack.cli("accounts", "op", "2fa", str(account_id))
    assert "no password" in report.stdout
    set_it = stack.cli(
        "accounts", "op", "2fa", str(account_id), "--set-password", input_text="\ns3cret-pw\ns3cret-pw\n"
    )
    assert set_it.returncode == 0, set_it.stdout + set_it.stderr
    assert "password changed" in set_it.stdout and "s3cret-pw" not in set_it.stdout + set_it.stderr
    assert password_matches(fake_account(redis_client, phone), "s3cret-pw")
    wrong = stack.cli(
        "accounts", "op", "2fa", str(account_id), "--set-password", input_text="not-it\nnext-pw\nnext-pw\n"
    )
    assert wrong.returncode == 1 and "wrong" in wrong.stdout
    assert password_matches(fake_account(redis_client, phone), "s3cret-pw")
    history = stack.cli_json("accounts", "ops", "--account", str(account_id))
    everything = json.dumps(history) + stack.log_of(stack.processes[1]) + stack.log_of(stack.processes[0])
    assert "s3cret-pw" not in everything and "next-pw" not in everything and "15550003011" not in everything
    assert session_for(phone) not in everything and API_HASH not in everything


def test_bad_choices_are_refused_with_one_clear_line(stack: Stack, telegram: Script) -> None:
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", "+15550003021")
    unknown = stack.cli("accounts", "op", "selfdestruct", str(account_id))
    assert unknown.returncode == 1 and "unknown operation 'selfdestruct'" in unknown.stderr
    nothing = stack.cli("accounts", "op", "check")
    assert nothing.returncode == 2 and "choose accounts" in nothing.stderr
    missing = stack.cli("accounts", "op", "check", "999")
    assert missing.returncode == 1 and "no account with id 999" in missing.stderr
    assert stack.cli("deactivate", "w1").returncode == 0
    asleep = stack.cli("accounts", "op", "check", str(account_id))
    assert asleep.returncode == 1 and "deactivated" in asleep.stdout
    for result in (unknown, nothing, missing, asleep):
        assert "Traceback" not in result.stdout + result.stderr


def test_an_operation_survives_its_worker_being_killed_and_runs_where_the_account_runs_next(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    phone = "+15550003031"
    telegram.set(phone, account={"spam": "free", "spam_delay": 4})
    stack.start_backend()
    worker = stack.start_worker("w1")
    online(stack, "w1")
    account_id = import_account(stack, "w1", phone)
    asked = stack.cli("accounts", "op", "check", str(account_id), "--no-wait", "--json")
    operation_id = json.loads(asked.stdout)["operations"][0]["id"]
    wait_until(
        lambda: redis_client.hget(f"fleet:worker:w1:op:{operation_id}", "status") == "running",
        20,
        message="operation running",
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    stack.start_worker("w1")
    followed = wait_until(
        lambda: (v := stack.cli_json("accounts", "ops", "--account", str(account_id))[0])["status"] == "done" and v,
        90,
        message="the operation ran again on the restarted worker",
    )
    assert followed["result"]["verdict"] == "ok"
    assert redis_client.lrange("fake:violations", 0, -1) == []
