"""What running the fleet against an independent Telegram server implementation found (issue 17, last part):

- `check` when @SpamBot cannot be resolved: the report keeps what it learned, the spam status is unknown with why;
- setting or changing the 2FA password derives its keys off the account's (shared) event loop;
- a profile change shows in `accounts show` at once, for a running account and for one that is not;
- `accounts show` lists events by their last time, with the count; a login prompt's errors get lines of their own
  (asserted in test_accounts_processes.py, with the login itself);
- `terminate-others` from a session younger than 24 hours says, before trying, from when it will be possible.

Telethon's behaviour is exercised with the real client on the loopback MTProto server; the fleet's own paths
with real processes (backend, worker, CLI) on the fake Telegram.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import telethon.password
from click.testing import CliRunner
from redis import Redis

from backend.cli import cli
from backend.operation_views import OperationView
from bot import operation_views, views
from bot.details import detail_text
from celery_app.operations import OperationName, describe_result
from common.details import detail
from database.engine import open_database
from database.events import NewEvent, account_subject, record_events
from database.models import Account, utcnow
from sandbox.mtproto import MTProtoServer
from tests import test_operations_mtproto as mtproto
from tests.support.stack import Stack, wait_until
from tests.test_accounts_processes import import_account, online
from tests.test_manager import Script

# The loopback MTProto server's fixtures, as test_operations_mtproto.py builds them.
server_key, server, factory, session = mtproto.server_key, mtproto.server, mtproto.factory, mtproto.session
PHONE = mtproto.PHONE
SLOW_DERIVATION = 0.3  # seconds added to each 2FA key derivation: as slow as an unfamiliar prime makes it (~1 s)


# --- check, with @SpamBot unknown to the server ---------------------------------------------------------------


def test_check_keeps_what_it_learned_when_spambot_cannot_be_resolved(
    server: MTProtoServer, factory: Any, session: str
) -> None:
    server.spambot_known = False  # contacts.resolveUsername("SpamBot"): USERNAME_NOT_OCCUPIED
    server.add_authorizations(PHONE, 2)
    server.set_premium(PHONE)
    server.restrict(PHONE, "Your account was restricted for spam.")
    report = mtproto.run(mtproto.operate(factory, session, OperationName.CHECK))
    assert report["authorized"] and report["premium"] and report["other_sessions"] == 2
    assert report["restricted"] and report["restriction"] == "Your account was restricted for spam."
    assert report["verdict"] == "restricted"
    assert (report["spam"], report["spam_text"]) == ("unknown", "")
    assert report["spam_reason"] == {"c": "spambot_not_found", "p": {}}
    assert server.calls(PHONE, "contacts.resolveUsername") and not server.calls(PHONE, "messages.sendMessage")
    assert describe_result("check", report) == (
        "restricted · restricted: Your account was restricted for spam. · "
        "spam: unknown (@SpamBot cannot be found on this Telegram server) · 2 other sessions · premium"
    )
    assert "spam: unknown (@SpamBot cannot be found on this Telegram server)" in views.check_details("en", report)
    assert "спам: неизвестно (@SpamBot не найден на этом сервере Telegram)" in views.check_details("ru", report)


# --- 2FA: the key derivation off the loop -------------------------------------------------------------------


def test_2fa_key_derivation_runs_off_the_accounts_event_loop(
    server: MTProtoServer, factory: Any, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    derivations: list[tuple[int, float]] = []  # (thread, seconds) of each SRP computation

    def timed(real: Any) -> Any:
        def derivation(*args: Any) -> Any:
            started = time.monotonic()
            try:
                time.sleep(SLOW_DERIVATION)
                return real(*args)
            finally:
                derivations.append((threading.get_ident(), time.monotonic() - started))

        return derivation

    monkeypatch.setattr(telethon.password, "compute_check", timed(telethon.password.compute_check))
    monkeypatch.setattr(telethon.password, "compute_digest", timed(telethon.password.compute_digest))

    async def scenario() -> tuple[int, float]:
        """Set, then change the password while another coroutine on the same loop ticks every 10 ms."""
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        try:
            first = {"current_password": None, "new_password": "first secret", "hint": ""}
            await mtproto.operate(factory, session, OperationName.TWO_FA, first)
            second = {"current_password": "first secret", "new_password": "second secret", "hint": "2nd"}
            await mtproto.operate(factory, session, OperationName.TWO_FA, second)
        finally:
            done.set()
            await ticking
        return threading.get_ident(), max(gaps)

    loop_thread, longest_stall = mtproto.run(scenario())
    assert server.password_matches(PHONE, "second secret") and server.password_hint(PHONE) == "2nd"
    assert len(derivations) == 3  # the new verifier; then the proof of the current one and the new verifier
    assert all(thread != loop_thread for thread, _ in derivations)
    assert longest_stall < min(seconds for _, seconds in derivations)  # the loop went on meanwhile


# --- terminate-others from a fresh session: what the bot says ----------------------------------------------------


def test_the_bot_says_from_when_ending_the_others_is_possible() -> None:
    possible_at = int(datetime(2030, 5, 6, 7, 8, tzinfo=UTC).timestamp())
    said = detail("too_fresh_to_end_until", possible_at=possible_at)
    view = OperationView(
        1, "b", 1, "+7 *** ***-00-01", "terminate-others", "failed", {}, said.text, "w1", None, utcnow(), None, said
    )
    assert operation_views.outcome_note("en", view).endswith(
        "this session is too new for Telegram to allow ending the others: possible from 2030-05-06 07:08 UTC "
        "(24 hours after its login)"
    )
    assert "Telegram разрешит завершить другие сеансы с 2030-05-06 07:08 UTC" in operation_views.outcome_note(
        "ru", view
    )
    assert detail_text("en", said).count("2030-05-06 07:08 UTC") == 1


# --- accounts show: events by their last time ----------------------------------------------------------------


def test_accounts_show_lists_events_by_their_last_time_with_their_count(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, sqlite_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    _engine, sessions = open_database(sqlite_url)
    with sessions.begin() as db:
        account = Account(
            phone_enc="p" * 40,
            phone_lookup="lookup",
            phone_masked="+1 *** ***-00-00",
            api_id=1,
            api_hash_enc="h" * 40,
            desired_state="stopped",
            status="stopped",
            status_detail="",
        )
        db.add(account)
        db.flush()
        account_id = account.id
    subject = account_subject(account_id)
    start = (utcnow() - timedelta(minutes=40)).replace(microsecond=0)
    for minutes, kind, said in ((0, "account.stopped", "stopped"), (10, "account.started", "starting")):
        with sessions.begin() as db:
            record_events(db, [NewEvent(kind, subject, detail(said), at=start + timedelta(minutes=minutes))])
    with sessions.begin() as db:  # the first one again: folded into its row, which moves to the end of the log
        record_events(db, [NewEvent("account.stopped", subject, detail("stopped"), at=start + timedelta(minutes=20))])

    result = CliRunner().invoke(cli, ["accounts", "show", str(account_id)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("Recent events:\n")[1].splitlines()
    shown = [datetime.strptime(line.split("  ")[1], "%Y-%m-%d %H:%M:%S UTC") for line in lines]

    def at(minutes: int) -> datetime:
        return (start + timedelta(minutes=minutes)).replace(tzinfo=None)

    assert shown == [at(20), at(10)]  # newest first, each at its last time
    assert f"account.stopped — stopped (×2 since {at(0).strftime('%H:%M:%S')} UTC)" in lines[0]
    assert "×" not in lines[1]


# --- real processes: profile names shown at once, terminate-others says when ------------------------------------


def _names(stack: Stack, account_id: int) -> tuple[str | None, str | None]:
    shown = stack.cli_json("accounts", "show", str(account_id))
    return shown["username"], shown["name"]


@pytest.mark.processes
def test_profile_changes_show_at_once_and_terminate_others_says_when(
    stack: Stack, telegram: Script, redis_client: Redis
) -> None:
    running_phone, idle_phone = "+15550009101", "+15550009102"
    telegram.set(running_phone, account={"sessions": 2, "fresh": True})  # the fleet's session: an hour old
    telegram.set(idle_phone, account={})
    stack.start_backend()
    stack.start_worker("w1")
    online(stack, "w1")
    running = import_account(stack, "w1", running_phone)
    idle = import_account(stack, "w1", idle_phone)
    assert stack.cli("accounts", "start", str(running)).returncode == 0
    wait_until(lambda: _names(stack, running) == ("user9101", "Test 9101"), 20, message="running as itself")

    # A profile change: the running account (its worker's live status) and the idle one (the record) alike.
    for account_id, username in ((running, "anna_run"), (idle, "anna_idle")):
        changed = stack.cli(
            "accounts", "op", "profile", str(account_id), "--first-name", "Anna", "--last-name", "K",
            "--username", username,
        )  # fmt: skip
        assert changed.returncode == 0, changed.stdout + changed.stderr
        wait_until(
            lambda a=account_id, u=username: _names(stack, a) == (u, "Anna K"),
            20,
            message=f"account {account_id}: names shown",
        )
    assert stack.cli_json("accounts", "show", str(running))["status"] == "running"

    # Ending the other sessions from an hour-old session: refused before asking, with the time it will do.
    asked_at = time.time()
    refused = stack.cli("accounts", "op", "terminate-others", str(running), env={"TZ": "JST-9"})
    assert refused.returncode == 1 and "1 of 1 failed" in refused.stderr
    found = re.search(r"possible from (\d{4}-\d\d-\d\d \d\d:\d\d) JST", refused.stdout)
    assert found, refused.stdout
    when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=timezone(timedelta(hours=9)))
    assert abs(when.timestamp() - (asked_at + 23 * 3600)) < 180  # a day after the login an hour ago
    state = json.loads(redis_client.get(f"fake:account:{running_phone}") or "{}")  # what the fake Telegram saw
    assert len(state["sessions"]) == 2 and "ResetAuthorizationsRequest" not in state["log"]
