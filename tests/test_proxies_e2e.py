"""Proxies end to end: a real SOCKS5 server none of us wrote (pproxy, its own process) in front of the loopback
MTProto server, a real worker process running real Telethon clients through it, the backend and the CLI.

Two proxies of one group; the accounts are pinned to the first and run through it. The first proxy is killed:
the worker's checks fail, the backend marks it dead (an event), moves the accounts to the second and their
worker restarts them there, never two connections of one account at once; `proxies list`, `proxies show` and
`accounts show` say why. Then the second dies too, with no third to go to: the accounts stay pinned to it
(never silently direct) and the events say so. No proxy credential is shown, stored in clear or put in Redis.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from sandbox.mtproto import MTProtoServer, ServerKey
from tests.support.socks_proxy import SocksProxy
from tests.support.stack import Stack, wait_until
from tests.test_real_telethon import API_HASH, start_real_worker

pytestmark = pytest.mark.processes
PHONES = ("+15550008001", "+15550008002", "+15550008003")
USER, PASSWORD = "fleet-proxy-user", "s3cret-proxy-pa55"


@pytest.fixture(scope="module")
def server_key() -> ServerKey:
    return ServerKey()


@pytest.fixture
def server(server_key: ServerKey) -> Iterator[MTProtoServer]:
    with MTProtoServer(key=server_key) as running:
        for index, phone in enumerate(PHONES):
            running.add_account(phone, first_name=f"Proxied{index}", username=f"proxied_{index}")
        yield running


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[tuple[SocksProxy, SocksProxy]]:
    first, second = SocksProxy(tmp_path, USER, PASSWORD), SocksProxy(tmp_path, USER, PASSWORD)
    with first, second:
        yield first, second


class Outputs:
    """Everything the CLI printed during the test (checked for credentials at the end)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seen: list[str] = []

    def run(self, *args: str) -> str:
        result = self.stack.cli(*args)
        self.seen += [result.stdout, result.stderr]
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))


def import_account(cli: Outputs, server: MTProtoServer, phone: str) -> int:
    out = cli.run(
        "accounts",
        "import",
        "--worker",
        "w1",
        "--session-string",
        server.session_string(phone),
        "--api-id",
        "12345",
        "--api-hash",
        API_HASH,
        "--phone",
        phone,
    )
    return int(out.split("imported account ")[1].split()[0])


def test_accounts_behind_a_dead_proxy_reconnect_through_another_of_its_group(
    stack: Stack, server: MTProtoServer, proxies: tuple[SocksProxy, SocksProxy], redis_client: Redis
) -> None:
    first, second = proxies
    stack.env.update(PROXY_CHECK_SECONDS="0.5", PROXY_DEAD_AFTER="2")
    cli = Outputs(stack)
    stack.start_backend()
    worker = start_real_worker(stack, server, "w1")
    added = cli.json("proxies", "add", first.url, second.url, "--group", "eu", "--max-accounts", "5")
    dying, spare = (item["id"] for item in added)
    assert [item["proxy"] for item in added] == [f"socks5://f***@127.0.0.1:{p.port}" for p in proxies]
    accounts = [import_account(cli, server, phone) for phone in PHONES]
    cli.run("accounts", "set-proxy", *map(str, accounts), "--proxy", str(dying), "--yes")
    for account_id in accounts:
        cli.run("accounts", "start", str(account_id), "--no-wait")

    def running_through(proxy: SocksProxy) -> bool:
        shown = [cli.json("accounts", "show", str(a)) for a in accounts]
        return all(s["status"] == "running" and s["proxy"].endswith(f":{proxy.port}") for s in shown)

    wait_until(lambda: running_through(first), 60, interval=0.3, message="the accounts running through the first")
    assert first.tunnels_to(server.port) >= len(accounts)  # through the proxy, not around it
    assert all(server.live_connections(phone) == 1 for phone in PHONES)
    wait_until(
        lambda: {p["id"]: p["state"] for p in cli.json("proxies", "list")} == {dying: "alive", spare: "alive"},
        30,
        interval=0.3,
        message="both proxies checked alive (the spare, idle, on request of the backend)",
    )

    first.kill()
    wait_until(lambda: running_through(second), 90, interval=0.3, message="the accounts back, through the second")
    listed = {p["id"]: p for p in cli.json("proxies", "list")}
    assert (listed[dying]["state"], listed[dying]["accounts"], listed[dying]["error"]) == ("dead", 0, "refused")
    assert (listed[spare]["state"], listed[spare]["accounts"]) == ("alive", len(accounts))
    table = cli.run("proxies", "list")
    assert "dead" in table and "the proxy refused the connection" in table
    shown = cli.json("proxies", "show", str(dying))
    assert shown["events"][0]["kind"] == "proxy.dead"
    assert "checks in a row failed (the proxy refused the connection)" in shown["events"][0]["detail"]
    account = cli.json("accounts", "show", str(accounts[0]))
    moved = [e for e in account["events"] if e["kind"] == "account.proxy" and e["actor"] == "backend"]
    assert f"proxy #{dying} (socks5://f***@127.0.0.1:{first.port}) is dead: moved to #{spare}" in moved[0]["detail"]
    assert "is dead: moved to" in cli.run("accounts", "show", str(accounts[0]))
    assert all(server.live_connections(phone) == 1 for phone in PHONES)
    assert server.duplicates == [] and all(server.peak_connections(phone) == 1 for phone in PHONES)

    # The second dies too, and the group has no third: the accounts stay pinned to it, disconnected.
    second.kill()
    wait_until(
        lambda: all(server.live_connections(phone) == 0 for phone in PHONES), 60, message="their connections gone"
    )
    wait_until(
        lambda: cli.json("proxies", "show", str(spare))["state"] == "dead", 60, interval=0.3, message="second dead"
    )
    wait_until(
        lambda: any(e["kind"] == "proxy.no_spare" for e in cli.json("proxies", "show", str(spare))["events"]),
        30,
        interval=0.3,
        message="the no-spare event",
    )
    for account_id in accounts:
        document = cli.json("accounts", "show", str(account_id))
        assert document["proxy"].endswith(f":{second.port}")  # never silently direct
        assert any("has no live proxy with room" in e["detail"] for e in document["events"])
    assert all(server.live_connections(phone) == 0 for phone in PHONES)
    assert worker.poll() is None

    # No credential anywhere: what the CLI printed, the processes' logs, Redis, the database.
    texts = [*cli.seen, *(stack.log_of(p) for p in stack.processes)]
    for key in redis_client.scan_iter():
        texts.append(key)
        kind = redis_client.type(key)
        if kind == "string":
            texts.append(str(redis_client.get(key)))
        elif kind == "hash":
            texts.append(str(redis_client.hgetall(key)))
        elif kind == "list":
            texts += redis_client.lrange(key, 0, -1)
    database = stack.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        for table_name in ("proxies", "accounts", "fleet_events"):
            texts += [str(row) for row in connection.execute(f"SELECT * FROM {table_name}")]
    leaks = [text for text in texts if PASSWORD in text or USER in text]
    assert leaks == []
