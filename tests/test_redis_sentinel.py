"""Redis behind Sentinel: every client of the fleet finds the primary through the sentinels and follows a failover.

A real primary, replicas and three sentinels (`scripts/embedded_sentinel.py`) on free loopback ports, with a
password on the data nodes and another on the sentinels. `kill_primary()` is a SIGKILL; the clients are the
project's own (`common.redis_target`), built as the processes build them: the sync and asyncio clients, the
bot's FSM storage, the board's Redis, Celery's broker and result backend in a real `run_worker.py`, Celery's
own command line, and `run_cli.py doctor`. Without REDIS_SENTINELS, REDIS_URL works as before (the tests of
plain mode are test_config, test_tls_redis, test_celery_tools).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import RedisError

from backend.dispatch import TaskDispatcher
from celery_app import rejections
from celery_app.contract import TaskName, queue_for
from common.redis_target import celery_connection, open_async_redis, open_redis, parse_target
from config import ConfigError, load_cli_settings, load_worker_settings, mask_url
from scripts.embedded_sentinel import EmbeddedSentinel, TlsFiles
from tests.support.stack import ROOT, Stack, wait_until

PASSWORD = "data-node-pw-7Qx"
SENTINEL_PASSWORD = "sentinel-pw-K2m"
CELERY = str(Path(sys.executable).parent / "celery")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedSentinel]:
    with EmbeddedSentinel(
        replicas=1, password=PASSWORD, sentinel_password=SENTINEL_PASSWORD, workdir=str(tmp_path / "sentinel")
    ) as running:
        yield running


@pytest.fixture
def target(cluster: EmbeddedSentinel, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Redis target the fleet's settings compose from the cluster's environment."""
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    return load_cli_settings().redis_url


def primary_client(cluster: EmbeddedSentinel) -> Redis:
    """A plain client on the node the sentinels name now (not through Sentinel: to see where writes landed)."""
    host, port = cluster.master_address()
    return Redis(host=host, port=port, password=PASSWORD, decode_responses=True, socket_timeout=5)


def replicated(client: Redis) -> None:
    """Wait until the replica has everything written so far, so the failover loses nothing the test reads."""
    assert client.execute_command("WAIT", 1, 10_000) >= 1


def attempt(action: Any) -> Any:
    """`action()`, or None while the failover is under way (the test then tries again)."""
    try:
        return action()
    except (RedisError, OSError):
        return None


# --- settings ----------------------------------------------------------------------------------------------


def test_the_settings_compose_one_target_from_redis_url_and_the_sentinels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"rediss://:{PASSWORD}@ignored.example:6380/3?ssl_ca_certs=/etc/fleet/ca.pem")
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.5:26379, 10.0.0.6:26380,[fd00::7]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    target = load_worker_settings().redis_url
    sentinel = parse_target(target)
    assert sentinel is not None
    assert sentinel.sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26380), ("fd00::7", 26381))
    assert sentinel.master_name == "fleet"  # REDIS_MASTER_NAME's default
    assert (sentinel.db, sentinel.tls, sentinel.password) == (3, True, PASSWORD)
    assert sentinel.sentinel_password == SENTINEL_PASSWORD
    assert dict(sentinel.options) == {"ssl_ca_certs": "/etc/fleet/ca.pem"}
    shown = mask_url(target)
    assert PASSWORD not in shown and SENTINEL_PASSWORD not in shown
    assert "10.0.0.5:26379" in shown and "ignored.example" not in shown
    # Celery: Kombu's sentinel transport and the Sentinel result backend, TLS verified against the given CA.
    celery = celery_connection(target)
    assert celery.broker_url.split(";")[0] == f"sentinel://:{PASSWORD}@10.0.0.5:26379/3"
    assert celery.broker_options["master_name"] == "fleet"
    assert celery.broker_options["sentinel_kwargs"]["password"] == SENTINEL_PASSWORD
    assert celery.tls == {"ssl_cert_reqs": 2, "ssl_ca_certs": "/etc/fleet/ca.pem"}


def test_without_sentinels_redis_url_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6390/2")
    monkeypatch.setenv("REDIS_MASTER_NAME", "other")  # without REDIS_SENTINELS it means nothing
    assert load_cli_settings().redis_url == f"redis://:{PASSWORD}@127.0.0.1:6390/2"
    assert parse_target(load_cli_settings().redis_url) is None
    celery = celery_connection(load_cli_settings().redis_url)
    assert (celery.broker_url, celery.backend_url, celery.tls) == (load_cli_settings().redis_url,) * 2 + (None,)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"REDIS_SENTINELS": "10.0.0.5:26379,10.0.0.6"}, None),  # a bare host means port 26379: accepted
        ({"REDIS_SENTINELS": "10.0.0.5:port"}, "got '10.0.0.5:port'"),
        ({"REDIS_SENTINELS": "10.0.0.5:26379,10.0.0.6:99999"}, "got '10.0.0.6:99999'"),
        ({"REDIS_SENTINELS": "10.0.0.5:0"}, "got '10.0.0.5:0'"),
        ({"REDIS_SENTINELS": "bad host:26379"}, "got 'bad host:26379'"),
        ({"REDIS_SENTINELS": "::1:26379"}, "got '::1:26379'"),
        ({"REDIS_SENTINELS": f"user:{PASSWORD}@10.0.0.5:26379"}, "got '***'"),
        ({"REDIS_SENTINELS": ",,"}, "REDIS_SENTINELS must be sentinel addresses as host:port"),
        ({"REDIS_SENTINELS": "10.0.0.5:26379", "REDIS_MASTER_NAME": "my master"}, "REDIS_MASTER_NAME must be 1-64"),
        (
            {"REDIS_SENTINELS": "10.0.0.5:26379", "REDIS_URL": "unix:///run/redis.sock"},
            "REDIS_URL must be redis:// or rediss:// when REDIS_SENTINELS is set",
        ),
    ],
)
def test_a_malformed_sentinel_setting_names_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if expected is None:
        assert parse_target(load_cli_settings().redis_url) is not None
        return
    with pytest.raises(ConfigError) as error:
        load_cli_settings()
    message = str(error.value)
    assert expected in message and "\n" not in message and PASSWORD not in message
    if expected.startswith(("got", "REDIS_SENTINELS")):
        assert message.startswith("REDIS_SENTINELS must be sentinel addresses as host:port separated by commas")


def test_a_process_started_with_a_malformed_sentinel_list_stops_with_one_line(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_worker.py")],
        cwd=stack.workdir,
        env={**stack.env, "WORKER_NAME": "w1", "REDIS_SENTINELS": "127.0.0.1:26379,nonsense:"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "REDIS_SENTINELS must be sentinel addresses" in result.stderr and "'nonsense:'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sentinels_that_name_no_primary_are_said_in_one_line(stack: Stack) -> None:
    from scripts.embedded_redis import free_port

    ports = [free_port(), free_port()]
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_cli.py"), "list"],
        cwd=stack.workdir,
        env={**stack.env, "REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in ports)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 69, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: Redis unreachable at redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/fleet/0: "
        f"no sentinel names a primary for 'fleet' (asked 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]})"
    ), result.stderr
    assert "ConnectionPool" not in result.stderr and "Traceback" not in result.stderr


# --- the clients through a failover ------------------------------------------------------------------------

processes = pytest.mark.processes


@processes
def test_the_sync_client_follows_a_failover_and_writes_land_on_the_new_primary(
    cluster: EmbeddedSentinel, target: str
) -> None:
    client = open_redis(target, socket_timeout=5, socket_connect_timeout=3, decode_responses=True)
    client.set("before", "1")
    replicated(client)
    old = cluster.kill_primary()
    # The client is not told anything: it fails while the sentinels promote the replica, then finds it.
    wait_until(lambda: attempt(lambda: client.set("after", "2")), 60, interval=0.2, message="a write after failover")
    new = cluster.wait_failover(timeout=60, old=old)
    assert new != old
    on_new_primary = primary_client(cluster)
    assert on_new_primary.execute_command("ROLE")[0] == "master"
    assert on_new_primary.get("after") == "2" and on_new_primary.get("before") == "1"
    assert client.get("before") == "1"
    client.close()


@processes
def test_the_async_client_follows_a_failover(cluster: EmbeddedSentinel, target: str) -> None:
    async def scenario() -> None:
        client = open_async_redis(target, socket_timeout=5, socket_connect_timeout=3, decode_responses=True)
        await client.set("before", "1")
        assert await client.execute_command("WAIT", 1, 10_000) >= 1
        old = cluster.kill_primary()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            try:
                await client.set("after", "2")
                break
            except (RedisError, OSError):
                assert loop.time() < deadline, "the async client never reached the new primary"
                await asyncio.sleep(0.2)
        assert cluster.wait_failover(timeout=60, old=old) != old
        assert await client.get("before") == "1"
        await client.aclose()

    asyncio.run(scenario())
    assert primary_client(cluster).get("after") == "2"


@processes
def test_the_bots_fsm_storage_and_the_boards_redis_go_through_sentinel(cluster: EmbeddedSentinel, target: str) -> None:
    from aiogram.fsm.storage.base import StorageKey

    from board.main import open_redis as open_board_redis
    from bot.main import async_redis, fsm_storage

    key = StorageKey(bot_id=1, chat_id=42, user_id=42)

    async def write() -> None:
        redis = async_redis(target)  # as run_bot builds it
        storage = fsm_storage(redis)
        await storage.set_state(key, "AddAccount:phone")
        await storage.set_data(key, {"step": 2})
        assert await redis.execute_command("WAIT", 1, 10_000) >= 1
        await storage.close()
        board = await open_board_redis(target)  # as run_board opens it: pinged, through the sentinels
        assert await board.set("board-probe", "ok")
        await board.aclose()

    async def read_after_failover() -> tuple[str | None, dict[str, Any]]:
        storage = fsm_storage(async_redis(target))
        try:
            return await storage.get_state(key), await storage.get_data(key)
        finally:
            await storage.close()

    asyncio.run(write())
    stored = primary_client(cluster)
    assert any("bot:fsm" in name for name in stored.keys("*")) and stored.get("board-probe") == "ok"
    old = cluster.kill_primary()
    cluster.wait_failover(timeout=60, old=old)
    state = wait_until(lambda: attempt(lambda: asyncio.run(read_after_failover())), 60, message="state after failover")
    assert state == ("AddAccount:phone", {"step": 2})


@processes
def test_a_worker_answers_through_the_sentinel_broker_and_backend_before_and_after_a_failover(
    cluster: EmbeddedSentinel, target: str, stack: Stack
) -> None:
    stack.env.update(cluster.env())
    worker = stack.start_worker("w1")
    dispatcher = TaskDispatcher(target)
    first = ping_until(dispatcher, stack, worker, 90, "ping through the sentinels")
    assert first["name"] == "w1"
    # Celery's own command line reaches the worker through the sentinels too (app_from_environment).
    inspect = subprocess.run(
        [CELERY, "-A", "celery_app", "inspect", "ping", "--timeout", "5", "-d", f"w1@{first['host']}"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pong" in inspect.stdout, inspect.stdout + inspect.stderr
    replicated(primary_client(cluster))

    old = cluster.kill_primary()
    cluster.wait_failover(timeout=60, old=old)
    after = ping_until(dispatcher, stack, worker, 120, "ping after failover")
    assert after["name"] == "w1" and after["pid"] == first["pid"]  # the same process followed the failover

    # Kombu switched to the next sentinel's URL on the connection error: the worker's queue is still guarded.
    redis = open_redis(target, decode_responses=True)
    redis.lpush(queue_for("w1"), b"not json at all")
    wait_until(lambda: rejections.read(redis, ["w1"]).get("w1", {}).get("not_json"), 60, message="the bad item counted")
    assert dispatcher.call("w1", TaskName.PING, timeout=30)["pid"] == first["pid"]
    assert worker.poll() is None
    assert stack.stop(worker) == 0  # a clean stop, Redis still there
    log = stack.log_of(worker)
    assert PASSWORD not in log and SENTINEL_PASSWORD not in log
    assert "Unrecoverable error" not in log


def ping_until(dispatcher: TaskDispatcher, stack: Stack, worker: Any, within: float, what: str) -> Any:
    """w1's answer to `ping`, tried until it comes; on failure, the last error and the worker's log say why."""
    errors: list[str] = []

    def once() -> Any:
        try:
            return dispatcher.call("w1", TaskName.PING, timeout=5)
        except Exception as error:  # noqa: BLE001 - any failure during the failover: the test tries again
            errors.append(f"{type(error).__name__}: {error}")
            return None

    try:
        return wait_until(once, within, interval=0.5, message=what)
    except AssertionError as failure:
        raise AssertionError(f"{failure}; errors {errors[-3:]}; worker log:\n{stack.log_of(worker)[-4000:]}") from None


@processes
def test_over_tls_the_clients_and_a_worker_verify_the_data_nodes_through_the_sentinels(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.test_tls_redis import _certificate, _write

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    _write(tmp_path / "ca", ca_key, _certificate("fleet test CA", ca_key, ca_key, "fleet test CA", ca=True))
    _write(tmp_path / "node", server_key, _certificate("127.0.0.1", ca_key, server_key, "fleet test CA", ca=False))
    tls = TlsFiles(str(tmp_path / "node.crt"), str(tmp_path / "node.key"), str(tmp_path / "ca.crt"))
    with EmbeddedSentinel(replicas=1, password=PASSWORD, workdir=str(tmp_path / "sentinel"), tls=tls) as cluster:
        env = cluster.env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        target = load_cli_settings().redis_url
        assert target.startswith("rediss+sentinel://")
        # The CA is not trusted yet: the primary's certificate is refused.
        with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"):
            open_redis(target, socket_timeout=5).ping()
        trusting = {**env, "SSL_CERT_FILE": tls.ca_file}
        monkeypatch.setenv("SSL_CERT_FILE", tls.ca_file)
        client = open_redis(target, socket_timeout=5, decode_responses=True)
        client.set("over-tls", "1")

        stack.env.update(trusting)
        worker = stack.start_worker("w1")
        dispatcher = TaskDispatcher(target)  # Celery's broker and result backend: sentinel://, TLS by settings
        first = ping_until(dispatcher, stack, worker, 90, "ping over TLS")
        replicated(client)
        old = cluster.kill_primary()
        cluster.wait_failover(timeout=60, old=old)
        after = ping_until(dispatcher, stack, worker, 120, "ping after failover over TLS")
        assert after["pid"] == first["pid"]
        assert wait_until(lambda: attempt(lambda: client.get("over-tls")), 60) == "1"
        assert stack.stop(worker) == 0
        assert PASSWORD not in stack.log_of(worker)


# --- doctor --------------------------------------------------------------------------------------------------


@processes
def test_doctor_shows_the_primary_the_replicas_and_the_sentinels(cluster: EmbeddedSentinel, stack: Stack) -> None:
    env = {**cluster.env()}
    primary = "{}:{}".format(*cluster.master_address())
    text = stack.cli("doctor", env=env)
    assert PASSWORD not in text.stdout + text.stderr and SENTINEL_PASSWORD not in text.stdout + text.stderr
    lines = text.stdout.splitlines()
    failover = next(line for line in lines if " failover " in line)
    assert failover.startswith("ok") and f"primary {primary} named by 3/3 sentinels" in failover
    assert f"primary   {primary}" in text.stdout
    assert sum(1 for line in lines if line.strip().startswith("replica ") and " online " in line) == 1
    assert sum(1 for line in lines if line.strip().startswith("sentinel ") and "(agrees)" in line) == 3

    cluster.stop_sentinel(2)
    report = json.loads(stack.cli("doctor", "--json", env=env).stdout)
    check = next(check for check in report["checks"] if check["name"] == "failover")
    details = check["details"]
    assert check["ok"] and details["mode"] == "sentinel" and details["primary"] == primary
    assert details["sentinels_agreeing"] == 2 and details["sentinels_reachable"] == 2
    down = "{}:{}".format(*cluster.sentinel_addresses[2])
    assert [s["reachable"] for s in details["sentinels"] if s["address"] == down] == [False]
    (replica,) = details["replicas"]
    assert replica["state"] == "online" and replica["lag_seconds"] is not None
    assert PASSWORD not in json.dumps(report) and SENTINEL_PASSWORD not in json.dumps(report)


def test_doctor_says_single_redis_without_sentinels(stack: Stack) -> None:
    report = json.loads(stack.cli("doctor", "--json").stdout)
    check = next(check for check in report["checks"] if check["name"] == "failover")
    assert check == {
        "name": "failover",
        "ok": True,
        "message": "single Redis, no failover",
        "details": {"mode": "single"},
    }
    assert "single Redis, no failover" in stack.cli("doctor").stdout
