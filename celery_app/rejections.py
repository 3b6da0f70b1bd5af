"""Messages a worker dropped from its queue as malformed or foreign: why, how many per worker in Redis, and the
failure (`TaskRejected`) a caller waiting on such a message gets as its result."""

from __future__ import annotations

import enum

from redis import Redis

from celery_app import keys

# Far above any message the fleet sends (a batch of 500 account specs is a few hundred KiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class Rejection(enum.StrEnum):
    """Why a message was dropped; the fixed set keeps the per-worker tally bounded."""

    NOT_JSON = "not_json"
    NOT_AN_ENVELOPE = "not_an_envelope"
    BAD_BODY_ENCODING = "bad_body_encoding"
    OVERSIZED = "oversized"
    UNDECODABLE_BODY = "undecodable_body"
    NOT_A_TASK = "not_a_task"
    UNKNOWN_TASK = "unknown_task"
    INVALID_TASK = "invalid_task"
    UNACCEPTABLE = "unacceptable"
    BAD_ARGUMENTS = "bad_arguments"


DESCRIPTIONS: dict[Rejection, str] = {
    Rejection.NOT_JSON: "not JSON text",
    Rejection.NOT_AN_ENVELOPE: "JSON, but not a message envelope",
    Rejection.BAD_BODY_ENCODING: "its body is not valid base64",
    Rejection.OVERSIZED: f"larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB",
    Rejection.UNDECODABLE_BODY: "its body cannot be decoded",
    Rejection.NOT_A_TASK: "not a task message",
    Rejection.UNKNOWN_TASK: "a task this worker does not know",
    Rejection.INVALID_TASK: "an invalid task message",
    Rejection.UNACCEPTABLE: "the consumer could not accept it",
    Rejection.BAD_ARGUMENTS: "its arguments do not fit the task",
}


def describe(reason: str) -> str:
    """Words for a counted reason (a reason from a newer worker is shown as it is stored)."""
    try:
        return DESCRIPTIONS[Rejection(reason)]
    except ValueError:
        return reason


class TaskRejected(Exception):
    """The result of a task message the worker dropped without running it; `reason` (a `Rejection` value) says why.

    The worker records it as the task's failure where the message names a task id, so a caller waiting on the
    result learns at once instead of timing out. Its text carries the reason only, never the message's content.
    The caller's result backend builds it again from its stored `args` (reason, description), as they are.
    """

    def __init__(self, reason: str, description: str = "") -> None:
        super().__init__(reason, description or describe(reason))
        self.reason = reason

    @property
    def description(self) -> str:
        return str(self.args[1])

    def __str__(self) -> str:
        return f"the worker dropped the task message without running it: {self.description} ({self.reason})"


def count(redis: Redis, worker: str, reason: Rejection) -> None:
    redis.hincrby(keys.worker_rejected(worker), reason.value, 1)


def read(redis: Redis, workers: list[str]) -> dict[str, dict[str, int]]:
    """Worker name -> {reason: count} for the given workers (one round trip); workers with none are left out."""
    pipe = redis.pipeline(transaction=False)
    for worker in workers:
        pipe.hgetall(keys.worker_rejected(worker))
    tallies: dict[str, dict[str, int]] = {}
    for worker, raw in zip(workers, pipe.execute(), strict=True):
        tally = {_text(reason): int(value) for reason, value in raw.items() if str(_text(value)).isdecimal()}
        if tally:
            tallies[worker] = tally
    return tallies


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
