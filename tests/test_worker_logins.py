"""A Redis login of its own for each worker (backend/worker_logins.py), against a real redis-server: what the ACL
user reaches and what it is refused (another worker's keys and queue, a remote-control broadcast, another
worker's task results), issuing again (a rotation) and deleting it, an ACL file, Sentinel (the login set on the
primary and on the replica), and a real worker process that runs an account on its own login with nothing
refused to it. The CLI and the bot: tests/test_worker_logins_ui.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from sqlalchemy import select

from backend.control_plane import ControlPlane
from backend.worker_logins import LoginError, WorkerLogins, own_logins, rules_for, username_for
from common.redis_target import open_redis, sentinel_target
from database.models import AuditEntry, Base
from sandbox.mtproto import MTProtoServer
from scripts.embedded_redis import find_redis_server, free_port
from scripts.embedded_sentinel import EmbeddedSentinel
from tests.support.stack import NETGUARD_DIR, ROOT, TEST_SECRET_KEY, Stack, wait_until
from tests.test_real_telethon import API_HASH, server, server_key, wait_status

FIXTURES = (server_key, server)

LIMITED = "fleet-test-limited"  # a control-plane login that may not run ACL commands


def drop_test_users(url: str) -> None:
    with Redis.from_url(url, decode_responses=True) as admin:
        for user in admin.acl_users():
            if user.startswith("fleet-worker-") or user == LIMITED:
                admin.acl_deluser(user)


@pytest.fixture(autouse=True)
def _no_leftover_users(redis_url: str) -> Iterator[None]:
    """ACL users outlive FLUSHALL: each test starts and ends with none of ours on the shared server."""
    drop_test_users(redis_url)
    yield
    drop_test_users(redis_url)


@pytest.fixture
def plane(redis_url: str, sqlite_url: str) -> Iterator[ControlPlane]:
    running = ControlPlane(redis_url, sqlite_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
    for name in ("w1", "w2", "w10"):
        running.fleet.add_worker(name, "10.0.0.1", "test")
    yield running
    running.close()


def as_worker(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, socket_timeout=5)


def limited_url(redis_url: str) -> str:
    """A login with every command but the administrative ones (ACL among them), on every key and channel."""
    with Redis.from_url(redis_url) as admin:
        admin.execute_command("ACL", "SETUSER", LIMITED, "reset", "on", ">limited-pw", "~*", "&*", "+@all", "-@admin")
    return redis_url.replace("redis://", f"redis://{LIMITED}:limited-pw@")


def refused(call: Any) -> bool:
    try:
        call()
    except NoPermissionError:
        return True
    return False


def subscribed(client: Redis, *, channel: str = "", pattern: str = "") -> bool:
    """Whether Redis lets `client` listen to a channel (or a pattern, matched as written); NOPERM comes as the
    answer to the subscription, so it is read here."""
    listening = client.pubsub()
    try:
        listening.subscribe(channel) if channel else listening.psubscribe(pattern)
        return bool(listening.get_message(timeout=2))
    except NoPermissionError:
        return False
    finally:
        listening.close()


# --- what the login reaches ---------------------------------------------------------------------------------


def test_the_rules_name_the_worker_exactly_and_read_only_what_it_must_not_write() -> None:
    rules = rules_for("w1")
    assert "~fleet:worker:w1" in rules and "~fleet:worker:w1:*" in rules and "~worker.w1" in rules
    assert "~worker.w1\x06\x16*" in rules and "~w1@*.celery.pidbox*" in rules
    assert not [rule for rule in rules if rule.startswith("~fleet:worker:w1*") or rule.startswith("~worker.w1*")]
    assert {"%R~fleet:account:*", "%R~fleet:worker:*:lease:*", "%R~fleet:control:public_key"} <= set(rules)
    assert not [rule for rule in rules if rule.startswith("~fleet:account")]  # assignments: written by no worker
    assert "~celery-task-meta-w1:*" in rules and not [rule for rule in rules if rule.startswith("~fleet:op")]
    # Channels: the root listens to the remote-control broadcasts only; a selector publishes events and own results.
    assert [rule for rule in rules if rule.startswith("&")] == ["&/0.celery.pidbox"]
    assert rules[-1] == "(+publish &/0.celeryev/* &celery-task-meta-w1:*)" and "-publish" in rules
    assert "&/3.celery.pidbox" in rules_for("w1", db=3) and "(+publish &/3.celeryev/*" in rules_for("w1", db=3)[-1]
    # Later rules win: the dangerous commands go after the groups that hold them, the few needed come back after.
    assert rules.index("-@all") < rules.index("+@write") < rules.index("-@dangerous") < rules.index("+info")
    assert username_for("w1") == "fleet-worker-w1"


def test_a_worker_login_reaches_its_own_keys_and_queue_and_nothing_of_another_worker(plane: ControlPlane) -> None:
    issued = plane.worker_logins.issue("w1", "test")
    assert issued.username == "fleet-worker-w1" and issued.redis_url.startswith("redis://fleet-worker-w1:")
    w1 = as_worker(issued.redis_url)
    assert w1.acl_whoami() == "fleet-worker-w1"
    # Its own: the registry, its queue (and Kombu's priority sub-queue), its leases, its status.
    assert w1.hset("fleet:worker:w1:specs", "5", "sealed") == 1
    assert w1.lpush("worker.w1", "message") == 1
    assert w1.lpush("worker.w1\x06\x163", "message") == 1
    assert w1.set("fleet:worker:w1:lease:5", "w1/instance", px=2000)
    assert w1.hset("fleet:worker:w1:account:5", "status", "running") == 1
    # Read only: assignments and other workers' leases (a lease script checks them).
    assert w1.hget("fleet:account:5:worker", "worker") is None and w1.get("fleet:worker:w2:lease:5") is None
    assert w1.get("fleet:control:public_key") is None
    # Nothing of w2's (nor of w10's, whose name starts with w1's), and nothing administrative.
    for call in (
        lambda: w1.hgetall("fleet:worker:w2:specs"),
        lambda: w1.lpush("worker.w2", "message"),
        lambda: w1.lpush("worker.w2\x06\x163", "message"),
        lambda: w1.set("fleet:worker:w2:lease:5", "w1/instance"),
        lambda: w1.hset("fleet:worker:w2:account:5", "status", "running"),
        lambda: w1.hset("fleet:account:5:worker", "worker", "w1"),
        lambda: w1.hgetall("fleet:worker:w10:specs"),
        lambda: w1.lpush("worker.w10", "message"),
        lambda: w1.set("fleet:worker:w10:lease:5", "w1/instance"),
        lambda: w1.eval("return redis.call('HSET', KEYS[1], 'worker', 'w1')", 1, "fleet:account:5:worker"),
        w1.flushall,
        w1.flushdb,
        lambda: w1.keys("*"),
        lambda: w1.scan(0),
        lambda: w1.config_get("*"),
        lambda: w1.execute_command("ACL", "SETUSER", "fleet-worker-w2", "on", ">mine", "~*", "+@all"),
        lambda: w1.execute_command("ACL", "DELUSER", "fleet-worker-w2"),
        lambda: w1.execute_command("SCRIPT", "FLUSH"),
        w1.client_list,  # other clients' addresses and commands
        lambda: w1.execute_command("CLIENT", "KILL", "ID", "999999"),
    ):
        assert refused(call)
    # What would stop or take over the server, or show other clients' traffic, asked of Redis without running it.
    with Redis.from_url(plane.redis_url, decode_responses=True) as admin:
        for command in (
            ["MONITOR"],
            ["SHUTDOWN"],
            ["REPLICAOF", "NO", "ONE"],
            ["FAILOVER"],
            ["SAVE"],
            ["SWAPDB", "0", "1"],
            ["CONFIG", "SET", "requirepass", "x"],
            ["ACL", "LIST"],
            ["ACL", "GETUSER", "default"],
            ["ACL", "LOG"],
            ["MODULE", "LIST"],
            ["FUNCTION", "FLUSH"],
        ):
            said = admin.execute_command("ACL", "DRYRUN", "fleet-worker-w1", *command)
            assert "no permissions" in said, command
        assert admin.execute_command("ACL", "DRYRUN", "fleet-worker-w1", "WAIT", "1", "100") == "OK"
        assert admin.execute_command("ACL", "DRYRUN", "fleet-worker-w1", "INFO", "replication") == "OK"
    w1.close()


def test_a_worker_login_publishes_no_remote_control_broadcast(plane: ControlPlane) -> None:
    """A worker listens to `celery inspect` and `control` broadcasts; sending one (`shutdown` to every worker)
    is the control plane's: a worker's login may publish Celery's events and its own results' notices only."""
    from kombu.exceptions import OperationalError

    from celery_app.app import create_celery_app

    issued = plane.worker_logins.issue("w1", "test")
    with as_worker(issued.redis_url) as w1, Redis.from_url(plane.redis_url, decode_responses=True) as admin:
        admin.execute_command("ACL", "LOG", "RESET")
        assert w1.publish("/0.celeryev/worker.heartbeat", "{}") == 0 and w1.publish("celery-task-meta-w1:x", "{}") == 0
        for call in (
            lambda: w1.publish("/0.celery.pidbox", "{}"),
            lambda: w1.execute_command("SPUBLISH", "/0.celery.pidbox", "{}"),
        ):
            assert refused(call)
        with pytest.raises(ResponseError, match="can't publish to the channel"):
            w1.eval("return redis.call('PUBLISH', ARGV[1], '{}')", 0, "/0.celery.pidbox")
        assert subscribed(w1, pattern="/0.celery.pidbox")  # as Kombu listens: the very name the root allows
        assert not subscribed(w1, pattern="/0.celeryev/*")  # others' events are not its to read
        app = create_celery_app(issued.redis_url)
        with pytest.raises(OperationalError, match="no permissions"):
            app.control.broadcast("shutdown")
        app.close()
        assert ("channel", "/0.celery.pidbox") in {(e["reason"], e["object"]) for e in admin.acl_log(count=50)}
    # On another database, Kombu's channels carry its number: the login is issued for the fleet's.
    other = WorkerLogins(plane.redis, plane.redis_url.rsplit("/", 1)[0] + "/2", plane.sessions)
    other.issue("w2", "test")
    assert plane.redis.acl_getuser("fleet-worker-w2")["channels"] == ["&/2.celery.pidbox"]


def test_task_ids_name_the_worker_and_a_worker_writes_only_its_own_results(plane: ControlPlane) -> None:
    from celery_app.contract import TASK_ID_SEP, TaskName, task_id_for
    from config import WORKER_NAME_PATTERN

    assert not WORKER_NAME_PATTERN.fullmatch(f"w1{TASK_ID_SEP}x")  # so `w1:` begins no id of `w1.eu` or `w10`
    assert task_id_for("w1.eu").startswith("w1.eu:") and task_id_for("w1") != task_id_for("w1")
    sent = plane.dispatcher.send("w1", TaskName.PING, ignore_result=True)
    assert sent.id.startswith("w1:") and len(sent.id) == len("w1:") + 32
    with as_worker(plane.worker_logins.issue("w1", "test").redis_url) as w1:
        # What Celery's result backend does to store a result (and what it reads first): own tasks' results work.
        stored = w1.pipeline().set("celery-task-meta-w1:abc", "{}", ex=60).publish("celery-task-meta-w1:abc", "{}")
        assert stored.execute() == [True, 0] and w1.get("celery-task-meta-w1:abc") == "{}"
        for key in ("celery-task-meta-w2:abc", "celery-task-meta-w10:abc", "celery-task-meta-w1.eu:abc", sent.id[3:]):
            assert refused(lambda key=key: w1.set(key, "{}")) and refused(lambda key=key: w1.get(key))
        assert refused(lambda: w1.set(f"celery-task-meta-{sent.id[3:]}", "{}"))  # an id that names no worker
        assert refused(lambda: w1.publish("celery-task-meta-w2:abc", "{}"))
        assert not subscribed(w1, channel="celery-task-meta-w2:abc")  # nor read another's result notices


def test_a_worker_keeps_its_unacknowledged_messages_in_its_own_keys(plane: ControlPlane) -> None:
    """Kombu's shared `unacked` hash would have a worker push another worker's old message back onto that
    worker's queue, which its login may not reach (and Kombu stops the worker on the refusal)."""
    from celery_app.app import create_celery_app, unacked_keys

    options = create_celery_app(plane.redis_url, worker="w1").conf.broker_transport_options
    assert {name: options[name] for name in unacked_keys("w1")} == unacked_keys("w1")
    assert "unacked_key" not in create_celery_app(plane.redis_url).conf.broker_transport_options  # the control plane
    with as_worker(plane.worker_logins.issue("w1", "test").redis_url) as w1:
        own = unacked_keys("w1")
        assert w1.hset(own["unacked_key"], "tag", "message") and w1.zadd(own["unacked_index_key"], {"tag": 1.0})
        assert w1.set(own["unacked_mutex_key"], "token", nx=True)
        assert refused(lambda: w1.hgetall("unacked")) and refused(lambda: w1.hgetall(unacked_keys("w2")["unacked_key"]))


def test_issuing_again_rotates_the_password_and_revoking_deletes_the_login(plane: ControlPlane) -> None:
    logins = plane.worker_logins
    assert logins.has_own_login("w1") is False
    first = logins.issue("w1", "test")
    second = logins.issue("w1", "test")
    assert first.redis_url != second.redis_url and logins.has_own_login("w1") is True
    with pytest.raises(AuthenticationError):
        as_worker(first.redis_url).ping()  # the old password is refused at once
    assert as_worker(second.redis_url).ping()
    assert logins.revoke("w1", "test") is True
    assert logins.has_own_login("w1") is False
    with pytest.raises(AuthenticationError):
        as_worker(second.redis_url).ping()
    assert logins.revoke("w1", "test") is False  # nothing left to delete
    # The passwords went nowhere but to Redis: not into any table (the audit log and the events included).
    with plane.sessions() as session:
        everything = repr([session.execute(select(table)).all() for table in Base.metadata.sorted_tables])
        actions = [row.action for row in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    for issued in (first, second):
        password = issued.redis_url.split(":")[2].split("@")[0]
        assert password not in everything and password in issued.env
    assert actions[-4:] == ["worker.issue_login", "worker.issue_login", "worker.revoke_login", "worker.revoke_login"]


def test_a_login_for_an_unknown_worker_is_refused_and_a_control_plane_without_acl_rights_says_so(
    plane: ControlPlane, redis_url: str
) -> None:
    from database.errors import WorkerNotFound

    with pytest.raises(WorkerNotFound):
        plane.worker_logins.issue("nobody", "test")
    limited = open_redis(limited_url(redis_url), decode_responses=True)
    logins = WorkerLogins(limited, limited_url(redis_url), plane.sessions)
    with pytest.raises(LoginError) as refusal:
        logins.issue("w1", "test")
    assert refusal.value.code == "acl_not_permitted"
    with Redis.from_url(redis_url, decode_responses=True) as admin:
        admin.execute_command("ACL", "LOG", "RESET")
        assert logins.has_own_login("w1") is None and own_logins(limited, ["w1", "w2"]) is None
        refusals = sum(int(entry["count"]) for entry in admin.acl_log())
        assert refusals >= 1
        assert logins.has_own_login("w2") is None  # a card view: not asked again for a while
        assert sum(int(entry["count"]) for entry in admin.acl_log()) == refusals
    with pytest.raises(LoginError):
        logins.revoke("w1", "test")
    limited.close()


def test_where_redis_has_an_acl_file_the_login_is_saved_there(tmp_path: Path, sqlite_url: str) -> None:
    acl_file = tmp_path / "users.acl"
    acl_file.touch()
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--aclfile", str(acl_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: _answers(url), 10, message="redis-server with an ACL file up")
        plane = ControlPlane(url, sqlite_url, 2.0)
        plane.fleet.add_worker("w1", "10.0.0.1", "test")
        issued = plane.worker_logins.issue("w1", "test")
        assert issued.saved and "user fleet-worker-w1 on" in acl_file.read_text()
        with Redis.from_url(url) as admin:
            admin.execute_command("ACL", "LOAD")  # what a restart reads back: the same rules, the same password
        with as_worker(issued.redis_url) as w1:
            assert w1.lpush("worker.w1\x06\x163", "message") == 1 and refused(lambda: w1.lpush("worker.w2", "m"))
        plane.worker_logins.revoke("w1", "test")
        assert "fleet-worker-w1" not in acl_file.read_text()
        plane.close()
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


# --- Sentinel -------------------------------------------------------------------------------------------------


def test_with_sentinel_the_login_is_set_on_the_primary_and_every_replica(tmp_path: Path, sqlite_url: str) -> None:
    with EmbeddedSentinel(replicas=1, password="data-pw", workdir=str(tmp_path / "sentinel")) as cluster:
        env = cluster.env()
        target = sentinel_target(env["REDIS_URL"], tuple(cluster.sentinel_addresses), env["REDIS_MASTER_NAME"])
        plane = ControlPlane(target, sqlite_url, 2.0, secret_key=lambda: TEST_SECRET_KEY)
        plane.fleet.add_worker("w1", "10.0.0.1", "test")
        issued = plane.worker_logins.issue("w1", "test")
        primary = cluster.master_address()
        assert len(issued.nodes) == 2 and issued.nodes[0] == f"{primary[0]}:{primary[1]}" and not issued.missed
        for node in issued.nodes:  # ACLs are not replicated: each data node was given the login
            host, _, port = node.rpartition(":")
            with Redis(host=host, port=int(port), password="data-pw", decode_responses=True) as client:
                assert client.acl_getuser("fleet-worker-w1") is not None
        settings = issued.settings
        assert settings["REDIS_SENTINELS"] == env["REDIS_SENTINELS"]
        assert settings["REDIS_MASTER_NAME"] == env["REDIS_MASTER_NAME"]
        assert f"REDIS_SENTINELS={env['REDIS_SENTINELS']}" in issued.env
        # What the worker's settings compose reaches the primary through the sentinels, as the worker.
        worker_target = sentinel_target(
            settings["REDIS_URL"], tuple(cluster.sentinel_addresses), settings["REDIS_MASTER_NAME"]
        )
        worker = open_redis(worker_target, decode_responses=True, socket_timeout=5)
        assert worker.acl_whoami() == "fleet-worker-w1" and worker.set("fleet:worker:w1:owner", "me")
        with pytest.raises(ResponseError):
            worker.set("fleet:worker:w2:owner", "me")
        worker.close()
        assert plane.worker_logins.revoke("w1", "test") is True
        for node in issued.nodes:
            host, _, port = node.rpartition(":")
            with Redis(host=host, port=int(port), password="data-pw", decode_responses=True) as client:
                assert client.acl_getuser("fleet-worker-w1") is None
        plane.close()


# --- a real worker on its own login ----------------------------------------------------------------------------


def acl_denials(redis_url: str) -> list[tuple[str, str, str]]:
    """(user, reason, object) of each entry of Redis's ACL log for a worker's login."""
    with Redis.from_url(redis_url, decode_responses=True) as admin:
        entries = admin.acl_log(count=500)
    return sorted(
        {(e["username"], e["reason"], e["object"]) for e in entries if e["username"].startswith("fleet-worker-")}
    )


@pytest.mark.processes
def test_a_real_worker_runs_an_account_on_its_own_login_and_nothing_is_refused_to_it(
    stack: Stack, server: MTProtoServer, redis_url: str
) -> None:
    session = server.session_string(server.add_account("+15550007201", first_name="Own").phone)
    stack.start_backend()
    added = stack.cli("add", "w1", "--address", "127.0.0.1", "--issue-login")
    assert added.returncode == 0, added.stderr
    url = next(line for line in added.stdout.splitlines() if line.startswith("REDIS_URL=")).removeprefix("REDIS_URL=")
    with Redis.from_url(redis_url) as admin:
        # Another worker's message left unacknowledged long ago, as Kombu keeps it in the shared hash: not this
        # worker's to restore (before, restoring it onto worker.w2 was refused and stopped the worker).
        admin.sadd("_kombu.binding.worker.w2", "worker.w2\x06\x16\x06\x16worker.w2")
        message = {"body": "e30=", "headers": {"id": "t-1"}, "properties": {"delivery_tag": "old", "priority": 0}}
        admin.hset("unacked", "old", json.dumps([message, "worker.w2", "worker.w2"]))
        admin.zadd("unacked_index", {"old": 1.0})
        admin.execute_command("ACL", "LOG", "RESET")
    key_file = server.write_public_key(stack.workdir / "mtproto.pub")
    worker = stack.start_worker(
        "w1", unset=("SECRET_KEY",), REDIS_URL=url, TG_MTPROTO_DC=server.dc_setting, TG_MTPROTO_PUBKEY=key_file
    )
    wait_until(
        lambda: (w := stack.cli_json("show", "w1")).get("status") == "online" and w.get("key"),
        30,
        message="w1 online on its own login, its key pinned",
    )
    assert stack.cli_json("show", "w1")["own_login"] is True
    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session, "--api-id", "12345",
        "--api-hash", API_HASH, "--phone", "+15550007201",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    account_id = int(imported.stdout.split("imported account ")[1].split()[0])
    assert stack.cli("accounts", "start", str(account_id)).returncode == 0
    wait_status(stack, account_id, "running", timeout=60)
    plane = ControlPlane(redis_url, stack.env["DATABASE_URL"], 2.0, secret_key=lambda: TEST_SECRET_KEY)
    from celery_app.contract import TaskName

    assert plane.dispatcher.call("w1", TaskName.PING, None, 20)["name"] == "w1"  # its result, under its own id
    inspected = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "celery_app", "inspect", "ping", "--timeout", "2"],
        cwd=stack.workdir,
        env={**stack.env, "PYTHONPATH": f"{NETGUARD_DIR}:{ROOT}"},  # the control plane's login: it broadcasts
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inspected.returncode == 0 and "w1@" in inspected.stdout, inspected.stderr
    assert acl_denials(redis_url) == []
    # With its own login, the worker's host cannot broadcast `shutdown` to the fleet: Redis refuses the publish.
    from kombu.exceptions import OperationalError

    from celery_app.app import create_celery_app

    taken_over = create_celery_app(url)
    with pytest.raises(OperationalError, match="no permissions"):
        taken_over.control.broadcast("shutdown")
    taken_over.close()
    assert acl_denials(redis_url) == [("fleet-worker-w1", "channel", "/0.celery.pidbox")]
    assert plane.dispatcher.call("w1", TaskName.PING, None, 20)["name"] == "w1"
    plane.close()
    assert worker.poll() is None and "Unrecoverable error" not in stack.log_of(worker)
