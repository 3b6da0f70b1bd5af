"""Celery task bodies for this worker, registered by their catalogue names: thin adapters over the runtime."""

from __future__ import annotations

from typing import Any

from celery import Celery

from celery_app.contract import PingResult, TaskName
from worker.runtime import WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=TaskName.PING.value)
    def ping() -> dict[str, Any]:
        return PingResult(
            **runtime.info.to_dict(), threads=runtime.threads, accounts_running=runtime.accounts_running()
        ).model_dump()
