"""Runs account operations (`celery_app.operations`) on this worker: bounded, one per account, flood-aware.

- At most `WORKER_OPERATIONS` operations run at once on the worker; the rest wait their turn in order.
- An account runs one operation at a time; its next one starts when the previous one ends.
- A `FLOOD_WAIT` pauses that account's operations (the current one first) until the wait is over; the
  operation is shown as `flood_wait` with its end time meanwhile, never failed for it.
- An operation on an account running here uses its client. An account that is not running is connected for
  the operation under its lease (with a holder of its own, so the account cannot start twice meanwhile) and
  disconnected afterwards: it is left as it was.

Where each operation stands is written to `keys.operation(worker, id)` (Redis) as it changes; the control plane
records the outcome. The operations themselves are in `worker.operations`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from celery_app import events, keys, leases
from celery_app.account_state import AccountStatus
from celery_app.contract import OPERATION_PARAMS, OperationRequest, TwoFaParams, validation_message
from celery_app.operations import OperationName, OperationStatus
from common.crypto import SecretError
from common.details import Detail, detail, free
from common.redaction import safe_detail
from worker import clients
from worker.account_manager import AccountManager
from worker.clients import ClientSpec, TelegramClientLike
from worker.failures import classify, describe_error, flood_delay
from worker.runner import operation_holder
from worker.secrets import WorkerSecrets

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16
OPERATION_TIMEOUT = 120.0
WAIT_FOR_RUNNING = 30.0  # an account starting here is given this long to come up before its operation runs


@dataclass
class Pending:
    request: OperationRequest
    spec: ClientSpec
    params: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    status: OperationStatus
    result: dict[str, Any] | None = None
    error: Detail | None = None
    wait_seconds: float | None = None  # a flood wait: run again after it


class OperationExecutor:
    def __init__(
        self,
        manager: AccountManager,
        box: WorkerSecrets,
        instance: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = OPERATION_TIMEOUT,
    ) -> None:
        self.manager = manager
        self.redis: Redis = manager.redis
        self.box = box
        self.instance = instance
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.holder = operation_holder(manager.worker_name, instance)
        self._queues: dict[int, collections.deque[Pending]] = {}
        self._ready: collections.deque[int] = collections.deque()
        self._busy: set[int] = set()
        self._running = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="operations", daemon=True)
        self._thread.start()

    # --- intake (Celery task threads)

    def submit(self, requests: list[OperationRequest], decode: Any) -> tuple[list[int], dict[int, str]]:
        """Queue operations; returns the ids accepted and, for the others, why not (nothing was done)."""
        accepted: list[int] = []
        refused: dict[int, str] = {}
        for request in requests:
            try:
                pending = Pending(request, decode(request.spec), self._params(request))
            except (ValueError, SecretError) as error:
                said = _refusal(error)
                refused[request.operation_id] = said.text
                self._write(request, OperationStatus.FAILED, error=said)
                continue
            if self._known(request.operation_id):
                accepted.append(request.operation_id)  # a redelivered message: it is queued or done already
                continue
            self._write(request, OperationStatus.QUEUED)
            with self._cond:
                if self._closed:
                    refused[request.operation_id] = detail("shutting_down").text
                    continue
                queue = self._queues.setdefault(request.spec.account_id, collections.deque())
                queue.append(pending)
                if len(queue) == 1 and request.spec.account_id not in self._busy:
                    self._ready.append(request.spec.account_id)
                self._cond.notify()
            accepted.append(request.operation_id)
        return accepted, refused

    def _known(self, operation_id: int) -> bool:
        """Queued or run by this worker process already (Celery may deliver a message twice)."""
        try:
            raw = self.redis.hmget(keys.operation(self.manager.worker_name, operation_id), "instance", "status")
        except RedisError:
            return False
        instance, status = (v.decode() if isinstance(v, bytes) else v for v in raw)
        return instance == self.instance and status is not None

    def _params(self, request: OperationRequest) -> dict[str, Any]:
        """The operation's parameters validated and decrypted (clear text only in this process's memory)."""
        from pydantic import ValidationError

        model = OPERATION_PARAMS[request.name]
        try:
            params = model.model_validate(request.params)
        except ValidationError as error:
            raise _Invalid(detail("invalid_parameters", problems=validation_message(error))) from None
        plain: dict[str, Any] = {
            key: value for key, value in params.model_dump(exclude_unset=True).items() if not key.endswith("_enc")
        }
        if isinstance(params, TwoFaParams):
            plain["current_password"] = (
                self.box.decrypt(params.current_password_enc, "current_password_enc")
                if params.current_password_enc
                else None
            )
            plain["new_password"] = (
                self.box.decrypt(params.new_password_enc, "new_password_enc") if params.new_password_enc else None
            )
            plain["hint"] = params.hint
        if "photo_b64" in plain:
            try:
                plain["photo"] = base64.b64decode(plain.pop("photo_b64"), validate=True)
            except ValueError:
                raise _Invalid(detail("photo_not_base64")) from None
        return plain

    # --- scheduling (one thread)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._running >= self.concurrency or not self._ready):
                    self._cond.wait()
                if self._closed:
                    return
                account_id = self._ready.popleft()
                queue = self._queues.get(account_id)
                if not queue or account_id in self._busy:
                    continue
                pending = queue[0]
                self._busy.add(account_id)
                self._running += 1
            loop_thread = self.manager.loop_for(account_id)
            future = loop_thread.submit(self._execute(pending))
            future.add_done_callback(lambda done, p=pending: self._finished(p, done))

    def _finished(self, pending: Pending, done: Any) -> None:
        try:
            outcome: Finished = done.result()
        except BaseException as error:
            log.exception("operation %d: crashed", pending.request.operation_id)
            outcome = Finished(OperationStatus.FAILED, error=describe_error(error))
        account_id = pending.request.spec.account_id
        if outcome.wait_seconds is not None:
            delay = flood_delay(outcome.wait_seconds)
            timer = threading.Timer(delay, self._resume, (account_id,))
            timer.daemon = True
            timer.start()
        with self._cond:
            self._running -= 1
            queue = self._queues.get(account_id)
            if outcome.wait_seconds is None:
                if queue and queue[0] is pending:
                    queue.popleft()
                self._busy.discard(account_id)
                if queue:
                    self._ready.append(account_id)
                else:
                    self._queues.pop(account_id, None)
            self._cond.notify()

    def _resume(self, account_id: int) -> None:
        """A flood wait is over: the account's operations go on, the interrupted one first."""
        with self._cond:
            self._busy.discard(account_id)
            if self._queues.get(account_id):
                self._ready.append(account_id)
            self._cond.notify()

    def close(self) -> None:
        """Stop taking operations; those not finished stay as their Redis state says (the control plane sends
        them again where the account next runs, or records them as "worker lost")."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- one operation (on a loop thread)

    async def _execute(self, pending: Pending) -> Finished:
        request = pending.request
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._write, request, OperationStatus.RUNNING)
        try:
            outcome = await asyncio.wait_for(self._perform(pending), self.timeout)
        except TimeoutError:
            outcome = Finished(OperationStatus.FAILED, error=detail("op_timed_out", seconds=self.timeout))
        if outcome.wait_seconds is not None:
            until = time.time() + outcome.wait_seconds
            await loop.run_in_executor(
                None, self._write, request, OperationStatus.FLOOD_WAIT, None, outcome.error, until
            )
        else:
            await loop.run_in_executor(None, self._write, request, outcome.status, outcome.result, outcome.error)
        return outcome

    async def _perform(self, pending: Pending) -> Finished:
        from worker.operation_failures import OperationFailed
        from worker.operations import perform

        request = pending.request
        account_id = request.spec.account_id
        try:
            client = await self._running_client(account_id)
            if client is not None:
                result = await perform(client, request.name, pending.params)
            else:
                result = await self._with_own_connection(pending, perform)
        except OperationFailed as error:
            self._renamed(account_id, error.result)
            return Finished(OperationStatus.FAILED, result=error.result, error=error.detail)
        except _Refused as error:
            return Finished(OperationStatus.FAILED, error=error.detail)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - classified for the operator
            outcome = classify(error)
            if outcome.wait_seconds is not None:
                return Finished(OperationStatus.FLOOD_WAIT, error=outcome.detail, wait_seconds=outcome.wait_seconds)
            return Finished(OperationStatus.FAILED, error=outcome.detail)
        self._renamed(account_id, result)
        return Finished(OperationStatus.DONE, result)

    def _renamed(self, account_id: int, result: dict[str, Any] | None) -> None:
        """A profile operation changed the account's names or username: its runner here (if it runs here)
        reports them from now on, starting at once (the status shown carries them)."""
        identity = (result or {}).get("identity")
        runner = self.manager.runner_of(account_id)
        if isinstance(identity, dict) and runner is not None:
            runner.renamed(identity.get("username"), identity.get("name"))

    async def _running_client(self, account_id: int) -> TelegramClientLike | None:
        """The client of the account's runner on this worker, once it is up; None if it does not run here."""
        deadline = time.monotonic() + WAIT_FOR_RUNNING
        while True:
            runner = self.manager.runner_of(account_id)
            if runner is None:
                return None
            if runner.client is not None and runner.state.status is AccountStatus.RUNNING:
                return runner.client
            if time.monotonic() >= deadline:
                state = runner.state
                status = state.status.value
                cause = state.coded or (free(state.detail) if state.detail else None)
                raise _Refused(
                    detail("account_not_ready_because", status=status, cause=cause)
                    if cause is not None
                    else detail("account_not_ready", status=status)
                )
            await asyncio.sleep(0.2)

    async def _with_own_connection(self, pending: Pending, perform: Any) -> dict[str, Any]:
        """Connect the account just for this operation, under its lease, and leave it as it was."""
        from worker.operations import gone_report

        account_id = pending.spec.account_id
        loop = asyncio.get_running_loop()
        acquired, holder = await loop.run_in_executor(
            None, leases.acquire, self.redis, account_id, self.holder, self.manager.lease_ttl
        )
        if not acquired:
            other = leases.worker_of_holder(holder) or "another worker"
            raise _Refused(detail("account_elsewhere", worker=other.removesuffix("#op")))
        keeper = asyncio.ensure_future(self._keep_lease(account_id))
        client = self.manager.factory(pending.spec)
        try:
            await self.manager.pacer.wait_turn()
            try:
                await asyncio.wait_for(client.connect(), clients.CONNECT_TIMEOUT)
            except Exception as error:
                # Telethon asks who it is while connecting: a banned or revoked account fails right here, and
                # for `check` that is the answer, not a failure.
                report = gone_report(error) if pending.request.name is OperationName.CHECK else None
                if report is None:
                    raise
                log.info("account %d: refused on connecting (%s)", account_id, describe_error(error))
                return report
            if request_needs_login(pending.request.name) and not await asyncio.wait_for(
                client.is_user_authorized(), clients.CALL_TIMEOUT
            ):
                raise _Refused(detail("session_not_authorized"))
            return dict(await perform(client, pending.request.name, pending.params))
        finally:
            keeper.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), clients.DISCONNECT_TIMEOUT)
            disconnected = client.disconnected
            if disconnected.done() and not disconnected.cancelled():
                disconnected.exception()
            await loop.run_in_executor(None, self._release, account_id)

    async def _keep_lease(self, account_id: int) -> None:
        while True:
            await asyncio.sleep(self.manager.lease_ttl / 3)
            with contextlib.suppress(RedisError):
                await asyncio.get_running_loop().run_in_executor(
                    None, leases.renew, self.redis, [account_id], self.holder, self.manager.lease_ttl
                )

    def _release(self, account_id: int) -> None:
        with contextlib.suppress(RedisError):
            leases.release(self.redis, account_id, self.holder)

    # --- where it stands (Redis)

    def _write(
        self,
        request: OperationRequest,
        status: OperationStatus,
        result: dict[str, Any] | None = None,
        error: Detail | None = None,
        until: float | None = None,
    ) -> None:
        fields = {
            "status": status.value,
            "account_id": str(request.spec.account_id),
            "name": request.name.value,
            "worker": self.manager.worker_name,
            "instance": self.instance,
            "result": json.dumps(result or {}, separators=(",", ":")),
            "error": safe_detail(error.text) if error is not None else "",
            "code": error.encode() if error is not None else "",
            "until": "" if until is None else f"{until:.3f}",
            "at": f"{time.time():.3f}",
        }
        key = keys.operation(self.manager.worker_name, request.operation_id)
        for attempt in range(3):
            try:
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, keys.OPERATION_TTL_SECONDS)
                # The fast path to the control plane (the hash stays the truth the scan reads).
                events.emit(
                    pipe,
                    events.WireEventKind.OPERATION_STATUS,
                    str(request.operation_id),
                    {name: fields[name] for name in ("account_id", "name", "status", "error", "code", "until")},
                    keys.worker_events(self.manager.worker_name),
                )
                pipe.execute()
                return
            except RedisError as problem:
                if attempt == 2:
                    log.warning("operation %d: could not record %s (%s)", request.operation_id, status, problem)
                else:
                    time.sleep(0.2 * (attempt + 1))


class _Refused(Exception):
    """The operation cannot run on this account now (it is not ours, not up, or not authorized)."""

    def __init__(self, said: Detail) -> None:
        super().__init__(said.text)
        self.detail = said


class _Invalid(ValueError):
    """The operation's parameters are not valid (nothing was done)."""

    def __init__(self, said: Detail) -> None:
        super().__init__(said.text)
        self.detail = said


def _refusal(error: ValueError) -> Detail:
    """Why an operation was refused before it was queued."""
    if isinstance(error, _Invalid):
        return error.detail
    if isinstance(error, SecretError):
        return detail("secret_unreadable")
    return free(safe_detail(str(error)))


def request_needs_login(name: OperationName) -> bool:
    """`check` reports an unauthorized session as its verdict; every other operation needs a login."""
    return name is not OperationName.CHECK
