"""Every entry point answers --version and --help without starting anything; `run_worker.py --check` tells an
ops person whether this host can run its worker; LOG_FORMAT=json gives one JSON object per log line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis import Redis

from celery_app import keys
from common.crypto import SecretBox
from tests.support.stack import ROOT, TEST_SECRET_KEY, Stack, wait_until
from version import __version__

pytestmark = pytest.mark.processes


def run(stack: Stack, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=stack.workdir,
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "script", ["run.py", "run_backend.py", "run_worker.py", "run_cli.py", "run_board.py", "run_sandbox.py"]
)
def test_every_entry_point_has_version_and_help(stack: Stack, redis_client: Redis, script: str) -> None:
    version = run(stack, script, "--version")
    assert version.returncode == 0 and __version__ in version.stdout
    helped = run(stack, script, "--help")
    assert helped.returncode == 0 and "usage" in helped.stdout.lower()
    assert redis_client.zcard(keys.HEARTBEATS) == 0  # nothing registered, nothing started


def test_worker_check_passes_on_a_good_host(stack: Stack) -> None:
    result = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout and "worker name 'w1' is free" in result.stdout
    assert "shared Redis login 'default'" in result.stdout and "run_cli.py workers login w1" in result.stdout
    assert f"no key yet: the first start makes it at {stack.workdir / 'worker-w1.key'}" in result.stdout
    assert not (stack.workdir / "worker-w1.key").exists()  # a check makes nothing


def test_worker_check_says_which_redis_login_the_worker_uses(stack: Stack) -> None:
    added = stack.cli("add", "w1", "--address", "127.0.0.1", "--issue-login")
    assert added.returncode == 0, added.stderr
    url = next(line for line in added.stdout.splitlines() if line.startswith("REDIS_URL=")).removeprefix("REDIS_URL=")
    own = run(stack, "run_worker.py", "--check", WORKER_NAME="w1", REDIS_URL=url)
    assert own.returncode == 0 and "Redis login fleet-worker-w1: this worker's own" in own.stdout, own.stdout
    assert url.split("@")[0] not in own.stdout + own.stderr  # the password is never shown
    borrowed = run(stack, "run_worker.py", "--check", WORKER_NAME="w2", REDIS_URL=url)
    assert borrowed.returncode == 1 and "fleet-worker-w1 is another worker's" in borrowed.stdout


def test_worker_check_names_each_problem(stack: Stack, redis_client: Redis) -> None:
    redis_client.set(keys.SECRET_CANARY, SecretBox(TEST_SECRET_KEY).encrypt("fleet"))
    wrong = run(stack, "run_worker.py", "--check", WORKER_NAME="w1", SECRET_KEY="another-key-" + "x" * 30)
    assert wrong.returncode == 1 and "SECRET_KEY differs from the control host's" in wrong.stdout
    right = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert right.returncode == 0 and "SECRET_KEY decrypts" in right.stdout
    worker = stack.start_worker("w1")
    wait_until(lambda: redis_client.exists(keys.worker_owner("w1")), 30, message="w1 registered")
    taken = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert taken.returncode == 1 and "worker name 'w1' is in use by a running worker" in taken.stdout
    assert worker.poll() is None  # the check disturbed nothing
    made = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert "key " in made.stdout and f"({stack.workdir / 'worker-w1.key'})" in made.stdout
    (stack.workdir / "worker-w1.key").chmod(0o644)
    exposed = run(stack, "run_worker.py", "--check", WORKER_NAME="w1")
    assert exposed.returncode == 1 and "mode 0644" in exposed.stdout
    down = run(stack, "run_worker.py", "--check", WORKER_NAME="w2", REDIS_URL="redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "unreachable" in down.stdout and "Traceback" not in down.stderr


def test_json_logs_are_one_object_per_line(stack: Stack, redis_client: Redis) -> None:
    worker = stack.start_worker("w1", LOG_FORMAT="json")
    wait_until(lambda: "consuming" in stack.log_of(worker), 30, message="worker started")
    stack.stop(worker)
    lines = [line for line in stack.log_of(worker).splitlines() if line.startswith("{")]
    documents = [json.loads(line) for line in lines]
    assert any("registered as worker" in d["message"] for d in documents)
    assert all({"time", "level", "logger", "message"} <= set(d) for d in documents)
    bad = run(stack, "run_worker.py", LOG_FORMAT="xml")
    assert bad.returncode == 78 and "LOG_FORMAT must be text or json" in bad.stderr


def test_output_cut_short_by_its_reader_is_not_an_error(stack: Stack) -> None:
    from sqlalchemy import insert

    from database.engine import open_database
    from database.models import Worker, utcnow

    _engine, sessions = open_database(stack.env["DATABASE_URL"])
    with sessions.begin() as session:
        session.execute(
            insert(Worker), [{"name": f"w{i:05d}", "address": "10.0.0.1", "created_at": utcnow()} for i in range(3000)]
        )
    cli = subprocess.Popen(
        [sys.executable, str(ROOT / "run_cli.py"), "list"],
        cwd=stack.workdir,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert cli.stdout is not None and cli.stderr is not None
    head = subprocess.run(["head", "-n", "2"], stdin=cli.stdout, capture_output=True, text=True, timeout=120)
    cli.stdout.close()  # like a shell: only `head` reads the pipe now
    errors = cli.stderr.read().decode()
    assert cli.wait(120) in (0, 1), errors  # click's own EPIPE handling: quiet, exit 1 (it was 70 and a message)
    assert head.stdout.count("\n") == 2
    assert "BrokenPipe" not in errors and "internal error" not in errors and "Traceback" not in errors


def test_doctor_names_the_database_file_and_answers_in_json(stack: Stack, tmp_path) -> None:
    result = run(stack, "run_cli.py", "doctor", "--json")
    report = json.loads(result.stdout)
    database = next(check for check in report["checks"] if check["name"] == "database")
    assert stack.env["DATABASE_URL"].removeprefix("sqlite:///") in database["message"]
    assert "empty: no workers or accounts recorded yet" in database["message"]
    assert result.returncode == (0 if report["ok"] else 1)
    elsewhere = subprocess.run(
        [sys.executable, str(ROOT / "run_cli.py"), "doctor"],
        cwd=tmp_path,
        env={**stack.env, "DATABASE_URL": "sqlite:///relative-test.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"SQLite file {ROOT / 'relative-test.db'}" in elsewhere.stdout  # the project's file, not the cwd's
    assert not (tmp_path / "relative-test.db").exists()
    (ROOT / "relative-test.db").unlink(missing_ok=True)


WORKER_LACKS = "aiogram,sqlalchemy,alembic,psycopg,prometheus_client"  # click comes with Celery


def test_a_worker_host_needs_only_requirements_worker(stack: Stack, telegram: object, redis_client: Redis) -> None:
    """Without the control host's packages, a worker registers, runs an account and answers --check."""
    lines = (ROOT / "requirements-worker.txt").read_text().lower().splitlines()
    listed = {line.split("==")[0].split("[")[0] for line in lines if line and not line.startswith("#")}
    assert not listed & {"aiogram", "sqlalchemy", "alembic", "psycopg", "prometheus-client"}
    lacking = {"FLEET_BLOCKED_IMPORTS": WORKER_LACKS}
    assert run(stack, "run_worker.py", "--check", WORKER_NAME="w1", **lacking).returncode == 0
    stack.start_backend()
    worker = stack.start_worker("w1", **lacking)
    wait_until(lambda: stack.cli("show", "w1").returncode == 0, 30, message="w1 recorded")
    from tests.support.fake_telegram import session_for

    imported = stack.cli(
        "accounts", "import", "--worker", "w1", "--session-string", session_for("+15550001111"), "--api-id", "1",
        "--api-hash", "0123456789abcdef0123456789abcdef", "--phone", "+15550001111", "--start",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    wait_until(
        lambda: stack.cli_json("accounts", "show", "1")["status"] == "running", 30, message="running on the lean host"
    )
    assert worker.poll() is None and "blocked: not installed" not in stack.log_of(worker)


def test_worker_check_reads_its_registry_of_specs(stack: Stack, redis_client: Redis) -> None:
    spec = {"account_id": 1, "session_enc": SecretBox(TEST_SECRET_KEY).encrypt("s" * 40)}
    redis_client.hset(keys.worker_specs("w1"), "1", json.dumps(spec))
    assert "SECRET_KEY decrypts" in run(stack, "run_worker.py", "--check", WORKER_NAME="w1").stdout
    other = run(stack, "run_worker.py", "--check", WORKER_NAME="w1", SECRET_KEY="another-key-" + "y" * 30)
    assert other.returncode == 1 and "SECRET_KEY differs" in other.stdout
    rotating = run(stack, "run_worker.py", "--check", WORKER_NAME="w1", SECRET_KEY=f"{'z' * 32},{TEST_SECRET_KEY}")
    assert rotating.returncode == 0, rotating.stdout  # an older key still listed decrypts
