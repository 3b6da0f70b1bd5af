"""Updates only where a plugin reads them: the real worker process with real Telethon against the loopback MTProto
server. An account without plugins runs on a connection not subscribed to updates (Telegram pushes it nothing)
and Telethon keeps no update state for it (no updates.getState or getDifference); enabling a plugin for the running
account subscribes it without a restart, and the plugin answers what arrives from then on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from sandbox.mtproto import MTProtoServer, ServerKey
from tests.support.stack import Stack, wait_until
from tests.test_real_telethon import import_account, start_real_worker, wait_status

pytestmark = pytest.mark.processes
PHONE, SENDER = "+15550008001", "+15550008002"


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    return ServerKey()


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key) as running:
        running.add_account(PHONE, first_name="Ann")
        running.add_account(SENDER, first_name="Sam")
        yield running


def answers(server: MTProtoServer) -> list[str]:
    """What the account answered the sender."""
    return [message.text for message in server.chat(SENDER, PHONE) if not message.out]


def test_a_plugin_enabled_on_a_running_account_subscribes_it_to_updates_without_a_restart(
    stack: Stack, server: MTProtoServer, redis_client: Redis, tmp_path: Path
) -> None:
    stack.start_backend()
    start_real_worker(stack, server, "w1")
    account_id = import_account(stack, "w1", server.session_string(PHONE), PHONE)
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_status(stack, account_id, "running")
    run = redis_client.hget(f"fleet:worker:w1:account:{account_id}", "run")

    assert server.deliver(PHONE, "before any plugin", sender=SENDER) == 0  # not subscribed: nothing pushed
    methods = [call.method for call in server.calls(PHONE)]
    assert methods[:2] == ["help.getConfig", "users.getUsers"]  # who it is, asked once, at connect
    assert not {"updates.getState", "updates.getDifference"} & set(methods)  # no update state kept

    config = tmp_path / "away.json"
    config.write_text(json.dumps({"text": "away", "cooldown_minutes": 0}))
    enabled = stack.cli("plugins", "enable", "autoreply", str(account_id), "--config", str(config))
    assert enabled.returncode == 0, enabled.stderr
    wait_until(
        lambda: [row["state"] for row in stack.cli_json("plugins", "status", str(account_id))] == ["running"],
        30,
        interval=0.3,
        message="autoreply loaded",
    )
    assert "updates.getState" in {call.method for call in server.calls(PHONE)}  # subscribed, with an update state
    assert server.deliver(PHONE, "hello", sender=SENDER) == 1  # pushed to its live connection
    wait_until(lambda: answers(server), 30, message="the plugin answers the message")
    assert answers(server) == ["away"]  # "before any plugin" (missed while unsubscribed) is not answered
    assert redis_client.hget(f"fleet:worker:w1:account:{account_id}", "run") == run  # the same run: no restart
    assert server.peak_connections(PHONE) == 1
