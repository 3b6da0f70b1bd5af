"""What the worker's tasks act on: its identity and (from the account manager) the clients it hosts."""

from __future__ import annotations

from dataclasses import dataclass

from celery_app.presence import WorkerInfo


@dataclass
class WorkerRuntime:
    info: WorkerInfo
    threads: int

    def accounts_running(self) -> int:
        return 0
