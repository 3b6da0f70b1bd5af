"""Workers' identities: each worker has a key pair of its own (made on its first start, kept 0600), registers the
public half with its presence, and the control plane pins the first key it sees for a worker's name. A worker
presenting another key is alerted and given no work — no start from the scan, a start or login refused — until
an owner trusts the new key (`run_cli.py workers trust NAME`); the pinned key back ends that by itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import select

from backend.cli import cli
from backend.control_plane import ControlPlane
from backend.errors import WorkerUnavailable
from backend.reconciler import Reconciler
from celery_app import keys, presence, report
from celery_app.presence import WorkerInfo
from common.sealing import KeyPair, fingerprint
from database.models import FleetEvent
from tests.support.stack import ROOT, TEST_SECRET_KEY, Stack, wait_until
from tests.test_level_triggered import OFFLINE_AFTER, account, reconciler, started_ids, worker

FIXTURES = (reconciler,)
K1, K2 = KeyPair.generate().public_key, KeyPair.generate().public_key


def beat(redis: Redis, name: str, instance: str, key: str) -> None:
    """A worker of `name` (this `instance`) registers with `key` and reports running nothing, as real ones do."""
    info = WorkerInfo(name, "a", "h", 1, "0.1.0", time.time(), instance, public_key=key)
    redis.delete(keys.worker_owner(name))  # the instance before it is gone (a restart, a reinstalled host)
    assert presence.register(redis, info, OFFLINE_AFTER, report=report.encode([])).registered
    at = presence.server_time(redis)
    redis.zadd(keys.HEARTBEATS, {name: at})
    redis.hset(keys.worker_report(name), mapping={"at": f"{at:.6f}", "instance": instance})


def key_events(reconciler: Reconciler) -> list[tuple[str, str]]:
    with reconciler.sessions() as session:
        rows = session.scalars(select(FleetEvent).where(FleetEvent.kind.like("worker.key%")).order_by(FleetEvent.id))
        return [(row.kind, row.detail or "") for row in rows]


@pytest.fixture
def plane(reconciler: Reconciler, redis_url: str, database_url: str) -> Iterator[ControlPlane]:
    control = ControlPlane(redis_url, database_url, OFFLINE_AFTER, secret_key=lambda: TEST_SECRET_KEY)
    yield control
    control.close()


def test_the_first_key_is_pinned_and_another_one_gets_no_work_until_trusted(
    reconciler: Reconciler, redis_client: Redis, plane: ControlPlane
) -> None:
    w1 = worker(reconciler, "w1")
    first = account(reconciler, w1, "running", "stopped")
    beat(redis_client, "w1", "i1", K1)
    reconciler.scan()
    assert started_ids(redis_client, "w1") == [first]
    view = plane.fleet.get_worker("w1").worker
    assert (view.key, view.key_pending) == (fingerprint(K1), None)
    pinned = key_events(reconciler)
    assert [kind for kind, _ in pinned] == ["worker.key_pinned"] and fingerprint(K1) in pinned[0][1]

    # The worker's host was replaced (or taken): it comes back as a new instance with another key. The first
    # scan that sees it does not judge yet (a rotation's moment looks the same); the second does.
    redis_client.delete("worker.w1")
    beat(redis_client, "w1", "i2", K2)
    reconciler.scan()
    assert [kind for kind, _ in key_events(reconciler)] == ["worker.key_pinned"]
    redis_client.delete("worker.w1")
    second = account(reconciler, w1, "running", "stopped")
    reconciler.scan()
    assert started_ids(redis_client, "w1") == []  # no work for a key nobody trusted
    view = plane.fleet.get_worker("w1").worker
    assert (view.key, view.key_pending) == (fingerprint(K1), fingerprint(K2))
    changed = [detail for kind, detail in key_events(reconciler) if kind == "worker.key_changed"]
    assert len(changed) == 1 and fingerprint(K1) in changed[0] and fingerprint(K2) in changed[0]  # alerted once
    with pytest.raises(WorkerUnavailable) as refused:
        plane.accounts.start(second, "cli:test")
    assert refused.value.code == "worker_key_untrusted_start_later"
    with pytest.raises(WorkerUnavailable) as refused:
        plane.accounts.begin_login("w1", "+15550000123", 1, "0" * 32, actor="cli:test")
    assert refused.value.code == "worker_key_untrusted"

    # An owner who reinstalled it trusts the new key: work flows again from the next scan.
    assert plane.fleet.trust_key("w1", "cli:test") == fingerprint(K2)
    reconciler.scan()
    assert started_ids(redis_client, "w1") == [second]  # (the first was sent a start before: in its cooldown)
    assert plane.fleet.get_worker("w1").worker.key == fingerprint(K2)
    assert [kind for kind, _ in key_events(reconciler)][-1] == "worker.key_trusted"


def test_the_pinned_key_back_ends_the_alarm_by_itself(reconciler: Reconciler, redis_client: Redis) -> None:
    w1 = worker(reconciler, "w1")
    beat(redis_client, "w1", "i1", K1)
    reconciler.scan()
    beat(redis_client, "w1", "i2", K2)
    reconciler.scan()
    reconciler.scan()
    waiting = account(reconciler, w1, "running", "stopped")
    assert started_ids(redis_client, "w1") == []
    beat(redis_client, "w1", "i3", K1)  # the old host is back with its own key
    reconciler.scan()
    assert started_ids(redis_client, "w1") == [waiting]
    with reconciler.sessions() as session:
        from database.workers import get_worker

        assert get_worker(session, "w1").pending_key is None


def test_a_worker_from_before_keys_keeps_working(reconciler: Reconciler, redis_client: Redis) -> None:
    w1 = worker(reconciler, "w1")
    waiting = account(reconciler, w1, "running", "stopped")
    beat(redis_client, "w1", "i1", "")
    reconciler.scan()
    assert started_ids(redis_client, "w1") == [waiting] and key_events(reconciler) == []


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str) -> None:
    """The CLI (in-process) pointed at the test's Redis and database."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET_KEY)


@pytest.mark.usefixtures("cli_env")
def test_trust_from_the_cli_asks_names_both_keys_and_is_audited(reconciler: Reconciler, redis_client: Redis) -> None:
    worker(reconciler, "w1")
    beat(redis_client, "w1", "i1", K1)
    reconciler.scan()
    runner = CliRunner()
    nothing = runner.invoke(cli, ["workers", "trust", "w1", "--yes"])
    assert nothing.exit_code == 1 and "presents no new key to trust" in nothing.stderr
    beat(redis_client, "w1", "i2", K2)
    reconciler.scan()
    reconciler.scan()  # a key other than the pinned one is judged once two scans in a row saw it
    shown = runner.invoke(cli, ["show", "w1"])
    assert f"⚠️ presents {fingerprint(K2)}, not the pinned {fingerprint(K1)}" in shown.stdout
    unasked = runner.invoke(cli, ["workers", "trust", "w1"])  # no terminal, no --yes: refused, nothing changes
    assert unasked.exit_code != 0 and fingerprint(K2) in unasked.stderr
    assert json.loads(runner.invoke(cli, ["show", "w1", "--json"]).stdout)["key_pending"] == fingerprint(K2)
    done = runner.invoke(cli, ["workers", "trust", "w1", "--yes"])
    assert done.exit_code == 0 and done.stdout.strip() == f"worker 'w1': key {fingerprint(K2)} trusted"
    audit = json.loads(runner.invoke(cli, ["audit", "--action", "worker.trust_key", "--json"]).stdout)
    assert [row["outcome"] for row in audit] == ["ok", "error:worker_key_not_pending"]


def test_a_real_worker_makes_its_key_once_and_registers_it(stack: Stack, redis_client: Redis) -> None:
    process = stack.start_worker("w1")
    wait_until(lambda: presence.read_infos(redis_client, ["w1"]).get("w1"), 60, message="w1 registered")
    key_file = stack.workdir / "worker-w1.key"
    assert key_file.stat().st_mode & 0o077 == 0
    registered = presence.read_infos(redis_client, ["w1"])["w1"].public_key
    assert registered == KeyPair.from_private_bytes(_raw(key_file)).public_key
    stack.stop(process)
    stack.start_worker("w1")  # the same key again, from the same file
    wait_until(
        lambda: (info := presence.read_infos(redis_client, ["w1"]).get("w1")) and info.pid != process.pid,
        60,
        message="w1 registered again",
    )
    assert presence.read_infos(redis_client, ["w1"])["w1"].public_key == registered


def test_a_key_file_others_can_read_stops_the_worker_with_one_line(stack: Stack, tmp_path: Path) -> None:
    exposed = tmp_path / "exposed.key"
    exposed.write_text("x")
    exposed.chmod(0o644)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_worker.py")],
        cwd=stack.workdir,
        env={**stack.env, "WORKER_NAME": "w1", "WORKER_KEY_FILE": str(exposed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert "cannot use the worker's key file" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def _raw(path: Path) -> bytes:
    import base64

    text = path.read_text().strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.usefixtures("cli_env")
def test_doctor_names_untrusted_and_keyless_workers(reconciler: Reconciler, redis_client: Redis) -> None:
    worker(reconciler, "w1")
    worker(reconciler, "old")
    beat(redis_client, "w1", "i1", K1)
    beat(redis_client, "old", "i1", "")
    reconciler.scan()
    out = CliRunner().invoke(cli, ["doctor"]).stdout
    assert "ok    worker keys" in out and "1 online worker(s) present no key" in out
    assert "no key presented (a worker from before keys): old" in out
    beat(redis_client, "w1", "i2", K2)
    reconciler.scan()
    reconciler.scan()
    out = CliRunner().invoke(cli, ["doctor"]).stdout
    assert "FAIL  worker keys" in out and "untrusted key, given no work: w1" in out
