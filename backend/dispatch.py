"""Sends tasks to one worker's queue by name (the control plane never imports `worker/` or Telethon)."""

from __future__ import annotations

from typing import Any

from celery_app.contract import COMMAND_EXPIRES_SECONDS, Payload, TaskName, queue_for
from common.errors import FleetError


class WorkerDidNotAnswer(FleetError):
    """A call got no answer from the worker: none within its timeout, or (`WorkerRejectedCall`) a refusal."""

    def __init__(self, worker: str, timeout: float) -> None:
        super().__init__(f"worker {worker!r} did not answer within {timeout:g} s", "no_answer", worker=worker)
        self.worker = worker


class WorkerRejectedCall(WorkerDidNotAnswer):
    """The worker dropped the call's message without running it (e.g. too large, arguments that do not fit the
    task, a task it does not know); `reason` is the `Rejection` value. A kind of no answer, so every caller that
    handles a timeout shows this as one clear line too."""

    def __init__(self, worker: str, timeout: float, reason: str, description: str) -> None:
        FleetError.__init__(
            self,
            f"worker {worker!r} rejected the call without running it: {description}",
            "worker_rejected_call",
            worker=worker,
            reason=reason,
        )
        self.worker = worker
        self.reason = reason


class TaskDispatcher:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from celery_app.app import create_celery_app

            self._app = create_celery_app(self.redis_url)
        return self._app

    def send(
        self,
        worker: str,
        task: TaskName,
        payload: Payload | None = None,
        expires: float = COMMAND_EXPIRES_SECONDS,
        producer: Any = None,
    ) -> Any:
        args = [payload.model_dump(mode="json")] if payload is not None else []
        return self.app.send_task(
            task.value,
            args=args,
            queue=queue_for(worker),
            expires=expires,
            producer=producer,
            # What Flower, `celery events` and the worker's log show instead of the arguments.
            argsrepr=f"({payload.masked_repr()},)" if payload is not None else "()",
            kwargsrepr="{}",
        )

    def send_many(self, messages: list[tuple[str, TaskName, Payload]]) -> None:
        """Send (worker, task, payload) messages over one producer: a scan's starts and stops, cheaply."""
        if not messages:
            return
        with self.app.producer_or_acquire() as producer:
            for worker, task, payload in messages:
                self.send(worker, task, payload, producer=producer)

    def call(
        self, worker: str, task: TaskName, payload: Payload | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send and wait for the answer; raises WorkerDidNotAnswer after `timeout` seconds, or WorkerRejectedCall
        as soon as the worker records that it dropped the message unread."""
        from celery.exceptions import NotRegistered
        from celery.exceptions import TimeoutError as CeleryTimeout

        # Imported before waiting: the result backend rebuilds the worker's TaskRejected from a loaded module.
        from celery_app.rejections import Rejection, TaskRejected, describe

        result = self.send(worker, task, payload, expires=timeout)
        try:
            answer = result.get(timeout=timeout, propagate=True)
        except CeleryTimeout:
            result.forget()
            raise WorkerDidNotAnswer(worker, timeout) from None
        except TaskRejected as rejected:
            raise WorkerRejectedCall(worker, timeout, rejected.reason, rejected.description) from None
        except NotRegistered:
            unknown = Rejection.UNKNOWN_TASK
            raise WorkerRejectedCall(worker, timeout, unknown.value, describe(unknown)) from None
        return dict(answer or {})
