"""SECRET_KEY rotation: several keys (the first encrypts, all decrypt), then `run_cli.py rekey`, then the old key
can go — accounts, board users, the workers' spec registries and the bot's wizard state all follow."""

from __future__ import annotations

import json
import subprocess

import pytest
from redis import Redis
from sqlalchemy import text

from backend.accounts_service import AccountService
from backend.apps_service import AppsService
from backend.dispatch import TaskDispatcher
from backend.errors import AccountError
from board.service import BoardService
from celery_app import keys
from common.crypto import SecretBox, SecretError
from config import BoardLimits
from database.engine import open_database
from tests.support.fake_telegram import session_for
from tests.support.stack import Stack

pytestmark = pytest.mark.processes
OLD = "old-secret-key-0123456789abcdefghijklmnop"
NEW = "new-secret-key-0123456789abcdefghijklmnop"
OTHER = "unrelated-key-0123456789abcdefghijklmnopq"
API_HASH = "0123456789abcdef0123456789abcdef"
PHONE = "+15550002222"


def services(stack: Stack, redis: Redis, secret: str) -> tuple[AccountService, BoardService]:
    _engine, sessions = open_database(stack.env["DATABASE_URL"])
    box = SecretBox(secret)
    accounts = AccountService(redis, sessions, TaskDispatcher(stack.env["REDIS_URL"]), 2.0, lambda: box)
    return accounts, BoardService(sessions, box, BoardLimits())


def rekey(stack: Stack, secret: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("rekey", "--yes", "--json", env={"SECRET_KEY": secret})


def test_rotate_then_rekey_then_drop_the_old_key(stack: Stack, redis_client: Redis) -> None:
    assert stack.cli("add", "w1", "--address", "10.0.0.1").returncode == 0
    accounts, board = services(stack, redis_client, OLD)
    account = accounts.import_session("w1", 12345, API_HASH, session_string=session_for(PHONE), phone=PHONE, actor="t")
    AppsService(accounts.sessions, lambda: SecretBox(OLD)).add(4242, API_HASH, actor="t")
    board_user = board.user(777000555, "en")
    spec = {"account_id": account.id, "session_enc": SecretBox(OLD).encrypt("s" * 40), "api_id": 1}
    redis_client.hset(keys.worker_specs("w1"), str(account.id), json.dumps(spec))
    wizard = f"{keys.PREFIX}:bot:fsm:42:42:data"
    redis_client.set(wizard, json.dumps({"api_hash_enc": SecretBox(OLD).encrypt(API_HASH), "worker": "w1"}), ex=600)

    # Both keys listed: the old secrets still decrypt and the old hashes still match.
    accounts, board = services(stack, redis_client, f"{NEW},{OLD}")
    with pytest.raises(AccountError, match="already"):
        accounts.import_session("w1", 12345, API_HASH, session_string=session_for(PHONE), phone=PHONE, actor="t")
    assert board.find_user(777000555) == board_user

    done = rekey(stack, f"{NEW},{OLD}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "accounts": 1,
        "apps": 1,
        "board_users": 1,
        "plugin_configs": 0,
        "redis_entries": 2,
        "failed": [],
    }

    # The old key gone: everything is readable, found and matched under the new one alone.
    accounts, board = services(stack, redis_client, NEW)
    assert accounts.get_account(account.id).phone_masked == account.phone_masked
    with pytest.raises(AccountError, match="already"):
        accounts.import_session("w1", 12345, API_HASH, session_string=session_for(PHONE), phone=PHONE, actor="t")
    assert board.find_user(777000555) == board_user
    with pytest.raises(AccountError, match="of the fleet already"):  # the session's hash follows the key too
        accounts.import_session("w1", 4242, session_string=session_for(PHONE), phone="+15550003333", actor="t")
    new_box = SecretBox(NEW)
    with accounts.sessions() as session:
        phone_enc, session_enc = session.execute(text("SELECT phone_enc, session_enc FROM accounts")).one()
        app_hash_enc = session.execute(text("SELECT api_hash_enc FROM api_apps")).scalar_one()
    assert new_box.decrypt(app_hash_enc) == API_HASH
    assert new_box.decrypt(phone_enc) == PHONE and new_box.decrypt(session_enc) == session_for(PHONE)
    stored = json.loads(redis_client.hget(keys.worker_specs("w1"), str(account.id)) or "{}")
    assert new_box.decrypt(stored["session_enc"]) == "s" * 40 and stored["api_id"] == 1
    assert new_box.decrypt(json.loads(redis_client.get(wizard) or "{}")["api_hash_enc"]) == API_HASH
    assert 0 < redis_client.ttl(wizard) <= 600
    with pytest.raises(SecretError):
        SecretBox(OLD).decrypt(phone_enc)
    listed = stack.cli("accounts", "list", "--json", env={"SECRET_KEY": NEW})
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["phone"] == account.phone_masked


def test_a_secret_no_key_can_read_is_reported_and_left(stack: Stack, redis_client: Redis) -> None:
    assert stack.cli("add", "w1", "--address", "10.0.0.1").returncode == 0
    accounts, _board = services(stack, redis_client, OTHER)
    accounts.import_session("w1", 12345, API_HASH, session_string=session_for(PHONE), phone=PHONE, actor="t")
    done = rekey(stack, NEW)
    assert done.returncode == 1
    assert json.loads(done.stdout)["failed"] == ["account 1"]
    assert PHONE not in done.stdout + done.stderr


def test_every_key_in_secret_key_must_be_long(stack: Stack) -> None:
    short = stack.cli("rekey", "--yes", env={"SECRET_KEY": f"{NEW},short"})
    assert short.returncode == 78 and "key 2 of SECRET_KEY must be at least 32 characters" in short.stderr
