"""End to end with real processes: workers, backend and CLI over a real Redis and a SQLite file.

A test that also takes `database_url` runs twice, on SQLite and on PostgreSQL (the control host's database of
a multi-host fleet): the backend's writes (discovery, events, two backends with one acting) on both.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import select

from celery_app.app import create_celery_app
from celery_app.contract import TaskName, queue_for
from database.engine import open_database
from database.models import FleetEvent, Worker
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.processes


@pytest.fixture
def stack(stack: Stack, request: pytest.FixtureRequest) -> Stack:
    """The stack on the database the test takes (`database_url`: SQLite, then PostgreSQL), else on SQLite."""
    if "database_url" in request.fixturenames:
        stack.env["DATABASE_URL"] = request.getfixturevalue("database_url")
    return stack


def _status(stack: Stack, name: str) -> str | None:
    worker = stack.workers().get(name)
    return worker["status"] if worker else None


def _db_worker(stack: Stack, name: str) -> Worker | None:
    _engine, sessions = open_database(stack.env["DATABASE_URL"])
    with sessions() as session:
        return session.scalar(select(Worker).where(Worker.name == name))


def _db_events(stack: Stack, name: str) -> list[str]:
    _engine, sessions = open_database(stack.env["DATABASE_URL"])
    with sessions() as session:
        return list(session.scalars(select(FleetEvent.kind).where(FleetEvent.subject == name).order_by(FleetEvent.id)))


def test_two_workers_show_online_with_their_details(stack: Stack, database_url: str) -> None:
    stack.start_backend()
    stack.start_worker("alpha", WORKER_ADDRESS="10.0.0.1")
    stack.start_worker("beta", WORKER_ADDRESS="10.0.0.2")
    workers = wait_until(
        lambda: (w := stack.workers()) and all(w.get(n, {}).get("status") == "online" for n in ("alpha", "beta")) and w,
        timeout=30,
        message="both workers online",
    )
    alpha = workers["alpha"]
    assert alpha["address"] == "10.0.0.1"
    assert alpha["is_active"] is True
    assert alpha["accounts"] == 0
    assert alpha["last_heartbeat"].endswith("Z")
    # The backend recorded both in the database.
    wait_until(lambda: (w := _db_worker(stack, "beta")) and w.status == "online", 5, message="beta recorded online")


def test_kill_9_goes_offline_within_offline_after_plus_a_scan(stack: Stack) -> None:
    stack.start_backend(interval=0.5)
    victim = stack.start_worker("victim")
    wait_until(lambda: (w := _db_worker(stack, "victim")) and w.status == "online", 10, message="victim online")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = time.monotonic()
    wait_until(
        lambda: (w := _db_worker(stack, "victim")) and w.status == "offline", 2 + 0.5 + 1.5, message="victim offline"
    )
    assert time.monotonic() - killed <= 2 + 0.5 + 1.5
    assert _status(stack, "victim") == "offline"
    assert _db_events(stack, "victim")[-1] == "worker.offline"


def test_sigterm_shows_offline_within_one_second(stack: Stack) -> None:
    stack.start_backend(interval=30)  # only the event stream can make this fast
    worker = stack.start_worker("graceful")
    wait_until(lambda: (w := _db_worker(stack, "graceful")) and w.status == "online", 10, message="online")
    worker.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    wait_until(
        lambda: (w := _db_worker(stack, "graceful")) and w.status == "offline",
        1.0,
        interval=0.02,
        message="offline in DB",
    )
    assert time.monotonic() - stopped <= 1.0
    assert _status(stack, "graceful") == "offline"
    assert worker.wait(15) == 0


def test_worker_survives_a_redis_restart(stack: Stack, redis_server) -> None:
    stack.start_backend(interval=0.5)
    worker = stack.start_worker("sturdy")
    wait_until(lambda: _status(stack, "sturdy") == "online", 10, message="online before restart")
    redis_server.restart()  # all data is gone: registration, queue bindings, event stream
    wait_until(lambda: _status(stack, "sturdy") == "online", 15, message="online again after restart")
    assert worker.poll() is None, "the worker must not have restarted"
    # It still consumes its queue after the broker came back.
    app = create_celery_app(stack.env["REDIS_URL"])
    reply = wait_until(lambda: _try_ping(app, "sturdy"), 20, interval=0.5, message="ping answered after Redis restart")
    assert reply["pid"] == worker.pid
    assert "registering again" in stack.log_of(worker)


def _try_ping(app, name: str) -> dict | None:
    try:
        return app.send_task(TaskName.PING.value, queue=queue_for(name), expires=3).get(timeout=3)
    except Exception:  # noqa: BLE001 - not up yet; try again
        return None


def test_events_emitted_while_backend_is_down_are_applied_when_it_starts(stack: Stack, database_url: str) -> None:
    worker = stack.start_worker("early")
    wait_until(lambda: _status(stack, "early") == "online", 10, message="online (live, no backend)")
    stack.stop(worker)
    assert _db_worker(stack, "early") is None, "no backend ran, so nothing was recorded yet"
    stack.start_backend(interval=30)
    wait_until(lambda: _db_worker(stack, "early") is not None, 10, message="recorded by the backend")
    worker_row = _db_worker(stack, "early")
    assert worker_row is not None and worker_row.status == "offline"
    assert _db_events(stack, "early") == ["worker.discovered", "worker.online", "worker.offline"]


def test_deactivate_hides_a_worker_from_active_only(stack: Stack) -> None:
    stack.start_backend()
    stack.start_worker("w-a")
    stack.start_worker("w-b")
    wait_until(lambda: _db_worker(stack, "w-a") and _db_worker(stack, "w-b"), 10, message="both recorded")
    result = stack.cli("deactivate", "w-a")
    assert result.returncode == 0 and "deactivated" in result.stdout
    active = {w["name"] for w in stack.cli_json("list", "--active-only")}
    assert active == {"w-b"}
    everyone = stack.workers()
    assert everyone["w-a"]["is_active"] is False and everyone["w-a"]["status"] == "online"
    assert stack.cli("activate", "w-a").returncode == 0
    assert {w["name"] for w in stack.cli_json("list", "--active-only")} == {"w-a", "w-b"}


def test_a_second_worker_with_an_online_name_refuses_to_start(stack: Stack) -> None:
    first = stack.start_worker("unique")
    wait_until(lambda: _status(stack, "unique") == "online", 10, message="first online")
    second = stack.start_worker("unique")
    assert second.wait(30) == 73  # not restarted by its unit, unlike a crash (1)
    output = stack.log_of(second)
    assert "worker name 'unique' is already in use" in output
    assert "Traceback" not in output and "cannot join thread" not in output  # a refusal, not a crash
    assert first.poll() is None
    assert stack.workers()["unique"]["pid"] == first.pid


def test_a_killed_worker_restarts_at_once_under_its_name(stack: Stack) -> None:
    first = stack.start_worker("phoenix")
    wait_until(lambda: _status(stack, "phoenix") == "online", 10, message="online")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = stack.start_worker("phoenix")  # same host, the old pid is dead: take over without waiting
    wait_until(
        lambda: stack.workers().get("phoenix", {}).get("pid") == second.pid, 10, message="restarted worker online"
    )


def test_ping_answers_with_the_worker_info(stack: Stack) -> None:
    worker = stack.start_worker("pinged", WORKER_ADDRESS="srv.example")
    wait_until(lambda: _status(stack, "pinged") == "online", 10, message="online")
    app = create_celery_app(stack.env["REDIS_URL"])
    reply = app.send_task(TaskName.PING.value, queue=queue_for("pinged")).get(timeout=10)
    assert reply["name"] == "pinged" and reply["pid"] == worker.pid and reply["address"] == "srv.example"


def test_only_one_of_two_backends_acts(stack: Stack, database_url: str) -> None:
    first = stack.start_backend(interval=0.3)
    second = stack.start_backend(interval=0.3)
    stack.start_worker("solo")
    wait_until(lambda: (w := _db_worker(stack, "solo")) and w.status == "online", 10, message="recorded")
    logs = [stack.log_of(first), stack.log_of(second)]
    assert sum("acting as the leader" in log for log in logs) == 1
    assert _db_events(stack, "solo").count("worker.discovered") == 1
    # The standby takes over when the leader stops.
    leader, standby = (first, second) if "acting as the leader" in logs[0] else (second, first)
    stack.stop(leader)
    wait_until(lambda: "acting as the leader" in stack.log_of(standby), 15, message="standby took over")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # two control hosts share one database
def test_the_standby_backend_takes_over_when_the_acting_one_is_killed(stack: Stack, database_url: str) -> None:
    first = stack.start_backend(interval=0.3)
    second = stack.start_backend(interval=0.3)
    acting = lambda: [p for p in (first, second) if "acting as the leader" in stack.log_of(p)]  # noqa: E731
    (leader,) = wait_until(acting, 30, message="one backend acting")
    standby = second if leader is first else first
    leader.send_signal(signal.SIGKILL)  # no release of the leader lock: the standby waits for it to lapse
    leader.wait()
    stack.start_worker("late")
    wait_until(lambda: "acting as the leader" in stack.log_of(standby), 30, message="the standby took over")
    wait_until(lambda: (w := _db_worker(stack, "late")) and w.status == "online", 30, message="recorded by the standby")
    assert _db_events(stack, "late").count("worker.discovered") == 1
    assert standby.poll() is None
