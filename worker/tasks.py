"""Celery task bodies for this worker, registered by their catalogue names: one line each over the runtime."""

from __future__ import annotations

from typing import Any

from celery import Celery

from celery_app.contract import TaskName
from worker.runtime import Answer, WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    def task(name: TaskName) -> Any:
        return app.task(name=name.value, acks_late=True)

    @task(TaskName.PING)
    def ping() -> Answer:
        return runtime.ping()

    @task(TaskName.START_ACCOUNT)
    def start_account(payload: Any = None) -> Answer:
        return runtime.start(payload)

    @task(TaskName.START_ACCOUNTS)
    def start_accounts(payload: Any = None) -> Answer:
        return runtime.start_many(payload)

    @task(TaskName.RESTART_ACCOUNT)
    def restart_account(payload: Any = None) -> Answer:
        return runtime.start(payload, restart=True)

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
