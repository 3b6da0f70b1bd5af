"""The real worker process with real Telethon (no FLEET_CLIENT_FACTORY) against the loopback MTProto server
(tests/support/mtproto_server): the worker reaches it through TG_MTPROTO_DC and TG_MTPROTO_PUBKEY, runs an
imported session, and reports what the server does to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mtproto_server import MTProtoServer, ServerKey
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.processes
API_HASH = "0123456789abcdef0123456789abcdef"
PHONE = "+15550007001"


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    return ServerKey()


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key) as running:
        running.add_account(PHONE, first_name="Real", last_name="Telethon", username="real_telethon")
        yield running


@pytest.fixture
def worker(stack: Stack, server: MTProtoServer, tmp_path: Path) -> str:
    """A backend and worker "w1" whose Telethon clients dial the loopback server only."""
    stack.start_backend()
    stack.start_worker(
        "w1", TG_MTPROTO_DC=server.dc_setting, TG_MTPROTO_PUBKEY=server.write_public_key(tmp_path / "mtproto.pub")
    )
    wait_until(lambda: stack.workers().get("w1", {}).get("status") == "online", 15, message="w1 online")
    return "w1"


def import_account(stack: Stack, worker: str, session: str) -> int:
    result = stack.cli(
        "accounts",
        "import",
        "--worker",
        worker,
        "--session-string",
        session,
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        "--phone",
        PHONE,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("imported account ")[1].split()[0])


def shown(stack: Stack, account_id: int) -> dict[str, Any]:
    document: dict[str, Any] = stack.cli_json("accounts", "show", str(account_id))
    return document


def wait_status(stack: Stack, account_id: int, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    """The account once its status is one of `statuses`."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(shown(stack, account_id))
        return dict(last) if last["status"] in statuses else None

    try:
        return wait_until(reached, timeout, interval=0.2, message=f"account {account_id} {'/'.join(statuses)}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last: {last.get('status')} {last.get('detail')!r}") from None


def test_start_runs_the_imported_session_and_stop_closes_it(stack: Stack, server: MTProtoServer, worker: str) -> None:
    account = server.account(PHONE)
    account_id = import_account(stack, worker, server.session_string(PHONE))
    started = stack.cli("accounts", "start", str(account_id))
    assert started.returncode == 0, started.stderr + stack.log_of(stack.processes[-1])
    document = wait_status(stack, account_id, "running")
    assert (document["username"], document["user_id"], document["worker"]) == ("real_telethon", account.user_id, "w1")
    assert "Real" in document["name"]
    assert server.live_connections(PHONE) == 1
    methods = {call.method for call in server.calls(PHONE)}
    assert {"help.getConfig", "users.getUsers"} <= methods
    seen = server.init_connection(PHONE)  # the device identity the account presents, as Telegram sees it
    assert seen is not None and seen["api_id"] == 12345
    assert {key: seen[key] for key in document["device"]} == document["device"]

    stopped = stack.cli("accounts", "stop", str(account_id))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    wait_until(lambda: server.live_connections(PHONE) == 0, 10, message="its connection closed")
    assert server.peak_connections(PHONE) == 1


def test_a_revoked_session_is_unauthorized(stack: Stack, server: MTProtoServer, worker: str) -> None:
    account_id = import_account(stack, worker, server.session_string(PHONE))
    server.revoke(PHONE)
    stack.cli("accounts", "start", str(account_id))
    document = wait_status(stack, account_id, "unauthorized")
    assert server.live_connections(PHONE) == 0 and document["worker"] == "w1"


def test_a_flood_wait_at_connect_is_reported(stack: Stack, server: MTProtoServer, worker: str) -> None:
    account_id = import_account(stack, worker, server.session_string(PHONE))
    server.flood(PHONE, 1, 120, method="users.getUsers")
    stack.cli("accounts", "start", str(account_id))
    wait_status(stack, account_id, "flood_wait")


# The two below failed before the worker let Telegram's errors through (real Telethon swallows them where
# the fake Telegram did not): a ban read as unauthorized, and a revocation while running went unnoticed.


def test_a_banned_account_is_banned(stack: Stack, server: MTProtoServer, worker: str) -> None:
    account_id = import_account(stack, worker, server.session_string(PHONE))
    server.ban(PHONE)
    stack.cli("accounts", "start", str(account_id))
    document = wait_status(stack, account_id, "banned", "unauthorized")
    assert document["status"] == "banned", document["detail"]


def test_a_session_revoked_while_running_is_noticed(stack: Stack, server: MTProtoServer, worker: str) -> None:
    account_id = import_account(stack, worker, server.session_string(PHONE))
    stack.cli("accounts", "start", str(account_id))
    wait_status(stack, account_id, "running")
    server.revoke(PHONE)
    wait_status(stack, account_id, "unauthorized", timeout=60)
