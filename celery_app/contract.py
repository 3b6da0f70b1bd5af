"""Task names, the per-worker queue, and the payload/result schemas every task is validated against."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

QUEUE_PREFIX = "worker."


def queue_for(worker_name: str) -> str:
    """The Celery queue a worker consumes: `worker.<name>`."""
    return f"{QUEUE_PREFIX}{worker_name}"


class TaskName(enum.StrEnum):
    PING = "fleet.ping"


class Payload(BaseModel):
    """Base for task payloads: unknown fields are refused, so a forged payload fails validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PingResult(Payload):
    name: str
    address: str
    host: str
    pid: int
    version: str
    started_at: float
    instance: str
    threads: int
    accounts_running: int
