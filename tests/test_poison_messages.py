"""A worker survives anything pushed onto its queue: each kind of bad message is dropped, logged and counted.

A real worker process consumes `worker.w1`; raw items go straight onto the Redis list, as anyone with
access to Redis could push them. After each, the worker still answers `ping`, nothing of the item is left
in the queue or in kombu's unacknowledged set (so it cannot come back after a restart), the reason is
counted, and the log says what happened without any of the item's content. A task message whose arguments do
not fit its task is dropped the same way before the task runs, and a caller waiting on a dropped message's
result gets a failure (`TaskRejected`) instead of waiting for its timeout.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from redis import Redis

from backend.dispatch import TaskDispatcher, WorkerRejectedCall
from celery_app import keys, rejections
from celery_app.app import create_celery_app, unacked_keys
from celery_app.contract import AccountRef, TaskName, queue_for
from celery_app.rejections import MAX_MESSAGE_BYTES, Rejection, TaskRejected
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.processes
QUEUE = queue_for("w1")
MARKER = "poison-marker-+15550001234"


@pytest.fixture
def app(stack: Stack) -> Iterator[Celery]:
    celery = create_celery_app(stack.env["REDIS_URL"])
    yield celery
    celery.close()


@pytest.fixture
def worker(stack: Stack, app: Celery) -> Any:
    process = stack.start_worker("w1")
    answer_ping(app)
    return process


def answer_ping(app: Celery) -> dict[str, Any]:
    return app.send_task(TaskName.PING.value, queue=QUEUE).get(timeout=60)


def real_envelope(app: Celery, redis: Redis, task: str = TaskName.PING.value) -> dict[str, Any]:
    """A message exactly as Celery sends it, taken off a queue nobody reads."""
    app.send_task(task, queue="nobody.reads.this")
    raw = redis.rpop("nobody.reads.this")
    assert raw is not None
    return json.loads(raw)


def rejected(redis: Redis) -> dict[str, int]:
    return rejections.read(redis, ["w1"]).get("w1", {})


def unacked(redis: Redis) -> int:
    """Messages left unacknowledged: in w1's own keys (`celery_app.app.unacked_keys`), and in the shared ones."""
    own = unacked_keys("w1")
    shared = redis.hlen("unacked") + redis.zcard("unacked_index")
    return shared + redis.hlen(own["unacked_key"]) + redis.zcard(own["unacked_index_key"])


def poison_items(app: Celery, redis: Redis) -> list[tuple[bytes, Rejection]]:
    """Each bad item with the reason the worker should give."""
    envelope = real_envelope(app, redis)
    bad_base64 = {**envelope, "body": f"%%% {MARKER} %%%"}
    undecodable = {**envelope, "body": base64.b64encode(f"{{not json {MARKER}".encode()).decode()}
    unknown = real_envelope(app, redis, task=f"fleet.{MARKER}")
    no_id = {**envelope, "headers": {k: v for k, v in envelope["headers"].items() if k != "id"}}
    not_a_task = {**envelope, "headers": {"note": MARKER}}
    oversized = {**envelope, "body": base64.b64encode(MARKER.encode() * (MAX_MESSAGE_BYTES // 20)).decode()}
    return [
        (f"plain text {MARKER}".encode(), Rejection.NOT_JSON),
        (b"\xff\xfe" + MARKER.encode(), Rejection.NOT_JSON),
        (json.dumps(["a", "json", "array", MARKER]).encode(), Rejection.NOT_AN_ENVELOPE),
        (json.dumps({"body": MARKER}).encode(), Rejection.NOT_AN_ENVELOPE),
        (json.dumps(bad_base64).encode(), Rejection.BAD_BODY_ENCODING),
        (json.dumps(oversized).encode(), Rejection.OVERSIZED),
        (json.dumps(undecodable).encode(), Rejection.UNDECODABLE_BODY),
        (json.dumps(unknown).encode(), Rejection.UNKNOWN_TASK),
        (json.dumps(not_a_task).encode(), Rejection.NOT_A_TASK),
        (json.dumps(no_id).encode(), Rejection.UNACCEPTABLE),
    ]


def test_every_kind_of_bad_message_is_dropped_logged_and_counted(
    stack: Stack, app: Celery, redis_client: Redis, worker: Any
) -> None:
    pid = answer_ping(app)["pid"]
    expected: dict[str, int] = {}
    for item, reason in poison_items(app, redis_client):
        redis_client.lpush(QUEUE, item)
        expected[reason.value] = expected.get(reason.value, 0) + 1
        # The worker takes it, drops it, and answers the next message.
        assert answer_ping(app)["pid"] == pid, reason
        assert rejected(redis_client) == expected, reason
        assert redis_client.llen(QUEUE) == 0
        wait_until(lambda: unacked(redis_client) == 0, 10, message=f"nothing of {reason} left unacknowledged")
    assert worker.poll() is None
    log = stack.log_of(worker)
    assert log.count("rejected a message") == sum(expected.values())
    assert MARKER not in log and "poison-marker" not in log
    assert "Traceback" not in log and "Unrecoverable error" not in log


def test_a_bad_message_does_not_come_back_after_a_restart(stack: Stack, app: Celery, redis_client: Redis) -> None:
    # Queued before the worker ever starts: the first start meets it, a restart must not.
    for item, _reason in poison_items(app, redis_client)[:4]:
        redis_client.lpush(QUEUE, item)
    first = stack.start_worker("w1")
    answer_ping(app)
    assert sum(rejected(redis_client).values()) == 4
    assert stack.stop(first) == 0
    second = stack.start_worker("w1")
    answer_ping(app)
    assert second.poll() is None
    assert sum(rejected(redis_client).values()) == 4  # nothing was restored to the queue
    assert "rejected a message" not in stack.log_of(second)


def test_an_unknown_task_fails_fast_for_a_sender_waiting_on_it(app: Celery, worker: Any) -> None:
    result = app.send_task("fleet.from_a_newer_backend", queue=QUEUE)
    with pytest.raises(Exception) as raised:
        result.get(timeout=60)
    assert "NotRegistered" in type(raised.value).__name__ or "fleet.from_a_newer_backend" in str(raised.value)


def test_a_known_task_with_garbage_arguments_fails_and_the_worker_goes_on(
    app: Celery, redis_client: Redis, worker: Any
) -> None:
    result = app.send_task(TaskName.STOP_ACCOUNT.value, args=[["not", "a", "payload"]], queue=QUEUE)
    answer = result.get(timeout=60, propagate=False)
    assert worker.poll() is None
    assert answer_ping(app)
    assert rejected(redis_client) == {}  # a well-formed task: the task refuses it, not the transport
    assert isinstance(answer, dict) and answer.get("ok") is False, answer


# (task, args, kwargs) that do not fit the task's signature; none of it may reach the task body.
WRONG_ARGUMENTS: list[tuple[str, list[Any], dict[str, Any]]] = [
    (TaskName.STOP_ACCOUNT.value, [], {"unexpected": MARKER}),  # an unexpected keyword
    (TaskName.PING.value, [MARKER], {}),  # an extra positional
    # Every fleet task's payload is optional, so Celery's own `celery.map(task, it)` - registered on every
    # worker - stands for a task whose required arguments are missing.
    ("celery.map", [], {}),
]


def refusal(result: Any) -> TaskRejected:
    """The failure a caller waiting on `result` gets (a generous bound: the worker may be slow, never silent)."""
    with pytest.raises(TaskRejected) as raised:
        result.get(timeout=60)
    return raised.value


def test_a_task_message_whose_arguments_do_not_fit_is_refused_before_the_task_runs(
    stack: Stack, app: Celery, redis_client: Redis, worker: Any
) -> None:
    pid = answer_ping(app)["pid"]
    task_ids = []
    for number, (task, args, kwargs) in enumerate(WRONG_ARGUMENTS, start=1):
        result = app.send_task(task, args=args, kwargs=kwargs, queue=QUEUE)
        task_ids.append(result.id)
        refused = refusal(result)
        assert refused.reason == Rejection.BAD_ARGUMENTS, task
        assert MARKER not in str(refused)
        assert answer_ping(app)["pid"] == pid, task  # the same worker serves the next task
        assert rejected(redis_client) == {Rejection.BAD_ARGUMENTS.value: number}, task
        wait_until(lambda: unacked(redis_client) == 0, 10, message=f"nothing of {task} left unacknowledged")
    assert redis_client.llen(QUEUE) == 0
    assert worker.poll() is None
    log = stack.log_of(worker)
    assert log.count("rejected a message") == len(WRONG_ARGUMENTS)
    assert "Traceback" not in log and MARKER not in log
    # Celery logs "Task <name>[<id>] received" when it makes a request for the pool: none was made.
    assert not [task_id for task_id in task_ids if task_id in log]


def test_an_oversized_call_fails_for_the_caller_waiting_on_it(app: Celery, redis_client: Redis, worker: Any) -> None:
    result = app.send_task(TaskName.PING.value, args=["x" * MAX_MESSAGE_BYTES], queue=QUEUE)
    assert refusal(result).reason == Rejection.OVERSIZED
    assert answer_ping(app)
    assert rejected(redis_client) == {Rejection.OVERSIZED.value: 1}


def answerable_items(app: Celery, redis: Redis) -> list[tuple[dict[str, Any], Rejection]]:
    """Bad task messages whose headers are readable enough to name the task id a caller waits on."""
    items = []
    for change, reason in [
        ({"body": f"%%% {MARKER} %%%"}, Rejection.BAD_BODY_ENCODING),
        ({"body": base64.b64encode(f"{{not json {MARKER}".encode()).decode()}, Rejection.UNDECODABLE_BODY),
        # A content type the fleet does not accept (a pickle): refused before anything decodes it.
        (
            {"content-type": "application/x-python-serialize", "body": base64.b64encode(MARKER.encode()).decode()},
            Rejection.INVALID_TASK,
        ),
    ]:
        items.append(({**real_envelope(app, redis), **change}, reason))
    envelope = real_envelope(app, redis)
    # A task "name" that is not a string: the consumer fails on it, the transport drops it.
    items.append(({**envelope, "headers": {**envelope["headers"], "task": [MARKER]}}, Rejection.UNACCEPTABLE))
    return items


def test_a_caller_waiting_on_a_rejected_message_gets_its_failure(
    stack: Stack, app: Celery, redis_client: Redis, worker: Any
) -> None:
    for item, reason in answerable_items(app, redis_client):
        redis_client.lpush(QUEUE, json.dumps(item))
        assert refusal(app.AsyncResult(item["headers"]["id"])).reason == reason
        assert rejected(redis_client).get(reason.value) == 1, reason
    assert answer_ping(app)
    log = stack.log_of(worker)
    assert "Traceback" not in log and MARKER not in log


class NewerTask(enum.StrEnum):
    """A task a newer control plane might send."""

    NEWER = "fleet.from_a_newer_backend"


def test_the_control_plane_gets_a_rejected_call_as_one_clear_error(stack: Stack, worker: Any) -> None:
    dispatcher = TaskDispatcher(stack.env["REDIS_URL"])
    try:
        # A payload for a task that takes none, as a control plane newer than the worker might send.
        with pytest.raises(WorkerRejectedCall) as raised:
            dispatcher.call("w1", TaskName.PING, AccountRef(account_id=1), timeout=60)
        assert raised.value.reason == Rejection.BAD_ARGUMENTS
        assert (
            str(raised.value) == "worker 'w1' rejected the call without running it: its arguments do not fit the task"
        )
        with pytest.raises(WorkerRejectedCall) as raised:
            dispatcher.call("w1", NewerTask.NEWER, timeout=60)  # type: ignore[arg-type]
        assert raised.value.reason == Rejection.UNKNOWN_TASK
    finally:
        dispatcher.app.close()


def test_forgetting_a_worker_drops_its_tally(stack: Stack, app: Celery, redis_client: Redis, worker: Any) -> None:
    redis_client.lpush(QUEUE, b"not json")
    answer_ping(app)
    assert redis_client.exists(keys.worker_rejected("w1"))
    stack.stop(worker)
    from celery_app import presence

    presence.forget(redis_client, "w1")
    assert not redis_client.exists(keys.worker_rejected("w1"))
