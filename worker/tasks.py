"""Celery task bodies for this worker, registered by their catalogue names: one line each over the runtime.

A body may leave work for after its answer (`AfterAnswer`): Celery runs it in the same thread once the answer is
stored and published, so the control plane waiting for the answer does not wait for it too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from celery_app.contract import TaskName
from worker.runtime import Answer, WorkerRuntime

log = logging.getLogger(__name__)


class AfterAnswer(threading.local):
    """The steps a task body left for after its answer, per task thread."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def add(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def run(self) -> None:
        steps, self.steps = self.steps, []
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("a step after a task's answer failed")


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    after_answer = AfterAnswer()

    class FleetTask(Task):  # type: ignore[misc]
        def after_return(self, *args: Any, **kwargs: Any) -> None:
            """Called by Celery once the answer is stored (whatever it was)."""
            after_answer.run()

    def task(name: TaskName) -> Any:
        return app.task(name=name.value, acks_late=True, base=FleetTask)

    @task(TaskName.PING)
    def ping() -> Answer:
        return runtime.ping()

    @task(TaskName.ROTATE_KEY)
    def rotate_key() -> Answer:
        return runtime.rotate_key()

    @task(TaskName.START_ACCOUNT)
    def start_account(payload: Any = None) -> Answer:
        return runtime.start(payload, after_answer=after_answer.add)

    @task(TaskName.START_ACCOUNTS)
    def start_accounts(payload: Any = None) -> Answer:
        return runtime.start_many(payload)

    @task(TaskName.RESTART_ACCOUNT)
    def restart_account(payload: Any = None) -> Answer:
        return runtime.start(payload, restart=True, after_answer=after_answer.add)

    @task(TaskName.STOP_ACCOUNT)
    def stop_account(payload: Any = None) -> Answer:
        return runtime.stop(payload)

    @task(TaskName.ACCOUNT_STATUS)
    def account_status(payload: Any = None) -> Answer:
        return runtime.status(payload)

    @task(TaskName.LIST_ACCOUNTS)
    def list_accounts() -> Answer:
        return runtime.list_accounts()

    @task(TaskName.SEND_LOGIN_CODE)
    def send_login_code(payload: Any = None) -> Answer:
        return runtime.send_code(payload)

    @task(TaskName.SUBMIT_LOGIN_CODE)
    def submit_login_code(payload: Any = None) -> Answer:
        return runtime.submit_code(payload)

    @task(TaskName.SUBMIT_LOGIN_PASSWORD)
    def submit_login_password(payload: Any = None) -> Answer:
        return runtime.submit_password(payload)

    @task(TaskName.CANCEL_LOGIN)
    def cancel_login(payload: Any = None) -> Answer:
        return runtime.cancel_login(payload)

    @task(TaskName.CHECK_SESSION)
    def check_session(payload: Any = None) -> Answer:
        return runtime.check_session(payload)

    @task(TaskName.CHECK_PROXIES)
    def check_proxies(payload: Any = None) -> Answer:
        return runtime.check_proxies(payload)

    @task(TaskName.OPERATE)
    def operate(payload: Any = None) -> Answer:
        return runtime.operate(payload)
