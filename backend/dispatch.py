"""Sends tasks to one worker's queue by name (the control plane never imports `worker/` or Telethon)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery_app import leases
from celery_app.contract import COMMAND_EXPIRES_SECONDS, AccountSpec, Payload, TaskName, queue_for, task_id_for
from common.errors import FleetError

if TYPE_CHECKING:
    from backend.sealing import Sealer

# Redis commands per pipeline when sending many messages (two a message: the push and its task-sent event).
PUBLISH_BATCH = 1000


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
    def __init__(self, redis_url: str, sealer: Sealer | None = None) -> None:
        """`sealer` (`backend.sealing`) seals each payload's secrets to the worker it goes to, and opens what
        workers send back; None sends payloads as they are (SECRET_KEY's tokens)."""
        self.redis_url = redis_url
        self.sealer = sealer
        self._app: Any = None
        self._redis: Any = None

    def _assign(self, messages: list[tuple[str, Payload | None]]) -> None:
        """Give every account a message would run (a start, an operation) to the worker it goes to, before it
        goes (`celery_app.leases.assign`): the worker takes the account's lease only where it is assigned."""
        given = [(worker, spec.account_id) for worker, payload in messages for spec in _specs(payload)]
        if not given:
            return
        if self._redis is None:
            from common.redis_target import open_redis

            self._redis = open_redis(self.redis_url)
        pipe = self._redis.pipeline(transaction=False)
        for worker, account_id in given:
            leases.assign(pipe, account_id, worker)
        pipe.execute()

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
        ignore_result: bool = False,
        **options: Any,
    ) -> Any:
        """Send one task by name to `worker`'s queue; `ignore_result` for a message nobody waits on: the
        worker stores no result, and this process does not subscribe to it. `options` go to Celery's publish.
        The task id names the worker (`task_id_for`): its own Redis login writes only its own tasks' results."""
        self._assign([(worker, payload)])
        return self._publish(worker, task, payload, expires, producer, ignore_result, **options)

    def _publish(
        self,
        worker: str,
        task: TaskName,
        payload: Payload | None,
        expires: float,
        producer: Any,
        ignore_result: bool,
        **options: Any,
    ) -> Any:
        """The message as it goes, its secrets sealed to the worker (the accounts it runs already given out)."""
        if payload is not None and self.sealer is not None:
            payload = self.sealer.for_worker(worker, payload)
        args = [payload.model_dump(mode="json")] if payload is not None else []
        return self.app.send_task(
            task.value,
            args=args,
            queue=queue_for(worker),
            task_id=task_id_for(worker),
            expires=expires,
            producer=producer,
            ignore_result=ignore_result,
            # What Flower, `celery events` and the worker's log show instead of the arguments.
            argsrepr=f"({payload.masked_repr()},)" if payload is not None else "()",
            kwargsrepr="{}",
            **options,
        )

    def send_many(self, messages: list[tuple[str, TaskName, Payload]]) -> None:
        """Send (worker, task, payload) messages nobody waits on (a scan's starts and stops) over one producer,
        in one Redis pipeline per PUBLISH_BATCH messages (Kombu's publish batch: the queue pushes and the
        task-sent events together), instead of a few round trips and a new Redis client for each message.

        The queues are not declared on the way (`declare=[]`): on Redis a message for a queue is pushed onto its
        list by name, and each worker declares its own queue when it starts consuming; declaring (and binding a
        copy of the queue to the channel) was a fifth of the cost of each message.
        """
        if not messages:
            return
        self._assign([(worker, payload) for worker, _task, payload in messages])
        with self.app.producer_or_acquire() as producer, producer.batch(PUBLISH_BATCH):
            for worker, task, payload in messages:
                self._publish(worker, task, payload, COMMAND_EXPIRES_SECONDS, producer, True, declare=[])

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


def _specs(payload: Payload | None) -> list[AccountSpec]:
    """The accounts a payload has a worker run (their specs): a start's, a batch's, an operation's."""
    if payload is None:
        return []
    found = [value for value in (getattr(payload, "spec", None),) if isinstance(value, AccountSpec)]
    found += [value for value in getattr(payload, "specs", None) or () if isinstance(value, AccountSpec)]
    for request in getattr(payload, "requests", None) or ():
        found += _specs(request)
    return found
