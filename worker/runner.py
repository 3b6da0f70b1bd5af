"""One account's life on one loop (`AccountRunner`): take its turn to connect, connect under a timeout, check
authorization, report `running`, watch for a stop or a dropped connection, reconnect with backoff, and report
every change. An operation's own connection holds the lease under a holder of its own (`operation_holder`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any, Protocol

from redis import Redis

from celery_app import leases
from celery_app.account_state import AccountState, AccountStatus
from common.details import Detail, detail, free
from worker import clients
from worker.clients import ClientFactory, ClientSpec, Identity, TelegramClientLike, identity_of
from worker.failures import backoff_delay, classify, describe_error, flood_delay
from worker.loops import LoopThread
from worker.pacing import ConnectPacer, jittered
from worker.status import StatusReporter

log = logging.getLogger(__name__)


class _StopRequested(Exception):
    """A stop came while a client call was in flight; the call was abandoned."""


QUEUE_NOTICE_SECONDS = 1.0  # a wait for the connect turn longer than this is shown in the status


class RunnerHost(Protocol):
    """What a runner needs of the worker that runs it (`worker.account_manager.AccountManager`)."""

    redis: Redis
    holder: str
    lease_ttl: float
    pacer: ConnectPacer
    factory: ClientFactory
    reporter: StatusReporter

    def state(
        self,
        account_id: int,
        status: AccountStatus,
        said: Detail | None = None,
        until: float | None = None,
        active: bool = False,
        identity: Identity | None = None,
        run: str = "",
    ) -> AccountState: ...

    def runner_finished(self, runner: AccountRunner, status: AccountStatus, said: Detail) -> None: ...

    async def wants_updates(self, account_id: int) -> bool: ...

    async def attach_plugins(self, account_id: int, client: TelegramClientLike) -> None: ...

    async def detach_plugins(self, account_id: int) -> None: ...


def operation_holder(worker_name: str, instance: str) -> str:
    """The lease holder of a connection made only for an operation (`worker.operator`): not the runner's, so
    that neither takes the other's lease as its own (`leases.acquire` takes over a holder of the same name)."""
    return leases.holder_id(f"{worker_name}#op", instance)


OPERATION_LEASE_WAIT = 150.0  # a start waits this long for an operation's own connection to end

# --- running accounts -------------------------------------------------------------------------------------


class AccountRunner:
    """One account's life on one loop: connect, watch, reconnect with backoff, report every change.

    `park` is set when the runner is stopped for a reason outside the control plane's wishes (the fence, the
    worker shutting down): the account stays in this worker's spec registry, to be resumed.
    """

    def __init__(self, manager: RunnerHost, spec: ClientSpec, loop_thread: LoopThread) -> None:
        self.manager = manager
        self.spec = spec
        self.loop_thread = loop_thread
        self.run_id = uuid.uuid4().hex[:12]
        self.identity = Identity()
        self.state: AccountState = manager.state(
            spec.account_id, AccountStatus.STARTING, detail("queued"), active=True, run=self.run_id
        )
        self.stop_reason: Detail | None = None
        self.report_final = True
        self.park = False
        self.keep_lease = False  # do not release the lease at the end (it is not ours to release)
        self.holds_lease = False
        self.client: TelegramClientLike | None = None  # while running: operations use it
        self._stop = asyncio.Event()
        self._stop_waiters: list[asyncio.Future[None]] = []  # futures done at a stop (`_stopped`)
        self.done: concurrent.futures.Future[None] | None = None

    def report(
        self, status: AccountStatus, said: Detail | None = None, until: float | None = None, active: bool = True
    ) -> None:
        self.state = self.manager.state(
            self.spec.account_id, status, said, until, active, self.identity, run=self.run_id
        )
        self.manager.reporter.report(self.state)

    def renamed(self, username: str | None, name: str | None) -> None:
        """The account's username or names changed (a profile operation): report its status again with them."""
        self.identity = dataclasses.replace(self.identity, username=username, name=name)
        state = self.state
        said = state.coded or (free(state.detail) if state.detail else None)
        self.report(state.status, said, state.until, state.active)

    def request_stop(
        self, reason: Detail, report_final: bool = True, park: bool = False, keep_lease: bool = False
    ) -> None:
        self.stop_reason = reason
        self.report_final = report_final
        self.park = park
        self.keep_lease = keep_lease
        self.loop_thread.loop.call_soon_threadsafe(self._signal_stop)

    def _signal_stop(self) -> None:
        self._stop.set()
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _stopped(self) -> asyncio.Future[None]:
        """A future done once a stop is requested: waiting on it takes no task of its own (a running account
        waits on one all its life, and a worker has thousands)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stop.is_set():
            waiter.set_result(None)
        else:
            self._stop_waiters.append(waiter)
        return waiter

    def _unwait(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._stop_waiters.remove(waiter)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()

    async def _unless_stopped(self, call: Any, timeout: float) -> Any:
        """`call` (a client's connect or request) under `timeout`, abandoned as soon as a stop is requested:
        Telethon's connect retries a refused address for seconds, and a stop (a restart onto another proxy)
        must not wait for that. Raises `_StopRequested` then; the caller disconnects the client."""
        work = asyncio.ensure_future(asyncio.wait_for(call, timeout))
        stop_waiter = self._stopped()
        try:
            await asyncio.wait({work, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unwait(stop_waiter)
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise _StopRequested
        return work.result()

    async def _wait_for_lease(self, deadline: float) -> bool:
        """Poll for the lease (another worker is letting go of the account) until it is ours or time is up."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            acquired, _holder = await loop.run_in_executor(
                None,
                leases.acquire,
                self.manager.redis,
                self.spec.account_id,
                self.manager.holder,
                self.manager.lease_ttl,
            )
            if acquired:
                self.holds_lease = True
                return True
            if time.monotonic() >= deadline or await self._sleep_or_stop(jittered(0.2)):
                return False
        return False

    async def _wait_turn(self, attempt: int) -> bool:
        """Wait for this connect's turn in the worker's connect bucket; False if a stop came meanwhile."""
        pacer = self.manager.pacer

        def notice(delay: float) -> None:
            if delay > QUEUE_NOTICE_SECONDS:  # a wait one would notice: say why it is not connecting yet
                turn = (
                    detail("connect_turn", rate=pacer.rate)
                    if attempt == 0
                    else detail("reconnect_turn", attempt=attempt + 1, rate=pacer.rate)
                )
                self.report(AccountStatus.STARTING, turn)

        return await pacer.wait_turn(self._stop, notice)

    async def _watch(self, client: TelegramClientLike) -> None:
        """Return when a stop is requested; raise the connection's own error when it drops."""
        stop_waiter = self._stopped()
        disconnected = client.disconnected
        try:
            await asyncio.wait({stop_waiter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unwait(stop_waiter)
        if self._stop.is_set():
            return
        cause = disconnected.exception() if not disconnected.cancelled() else None  # retrieved: never "unhandled"
        if cause is not None:
            raise cause
        raise ConnectionResetError("the connection to Telegram was closed")

    async def run(self, lease_deadline: float = 0.0) -> None:
        client: TelegramClientLike | None = None
        attempt = 0
        final: tuple[AccountStatus, Detail] = (AccountStatus.STOPPED, detail("stopped"))
        if not self.holds_lease and not await self._wait_for_lease(lease_deadline):
            log.warning("account %d: its lease stayed with another worker; not started here", self.spec.account_id)
            self.report_final = False
            self.keep_lease = True
            self.manager.runner_finished(self, AccountStatus.STOPPED, detail("lease_elsewhere"))
            return
        try:
            spec = self.spec
            if spec.receive_updates and not await self.manager.wants_updates(spec.account_id):
                spec = dataclasses.replace(spec, receive_updates=False)  # no plugin reads them
            client = self.manager.factory(spec)
            while not self._stop.is_set():
                try:
                    if not await self._wait_turn(attempt):
                        break
                    self.report(
                        AccountStatus.STARTING,
                        detail("connecting") if attempt == 0 else detail("reconnecting", attempt=attempt + 1),
                    )
                    await self._unless_stopped(client.connect(), clients.CONNECT_TIMEOUT)
                    if not await self._unless_stopped(client.is_user_authorized(), clients.CALL_TIMEOUT):
                        final = (AccountStatus.UNAUTHORIZED, detail("session_not_authorized"))
                        break
                    self.identity = identity_of(await self._unless_stopped(client.get_me(), clients.CALL_TIMEOUT))
                    self.report(AccountStatus.RUNNING)
                    attempt = 0
                    self.client = client
                    await self.manager.attach_plugins(self.spec.account_id, client)
                    try:
                        await self._watch(client)
                    finally:
                        self.client = None
                        await self.manager.detach_plugins(self.spec.account_id)
                    if self._stop.is_set():
                        break
                except asyncio.CancelledError:
                    raise
                except _StopRequested:
                    break
                except Exception as error:  # noqa: BLE001 - every failure is classified and reported
                    outcome = classify(error)
                    if outcome.terminal:
                        final = (outcome.status, outcome.detail)
                        log.warning("account %d: %s", self.spec.account_id, outcome.detail)
                        break
                    await self._disconnect(client)
                    if outcome.wait_seconds is not None:
                        until = time.time() + outcome.wait_seconds
                        self.report(AccountStatus.FLOOD_WAIT, outcome.detail, until=until)
                        if await self._sleep_or_stop(flood_delay(outcome.wait_seconds)):
                            break
                        continue
                    attempt += 1
                    delay = backoff_delay(attempt)
                    self.report(
                        AccountStatus.ERROR, detail("retry", detail=outcome.detail, attempt=attempt, delay=delay)
                    )
                    if await self._sleep_or_stop(delay):
                        break
            if self._stop.is_set():
                final = (AccountStatus.STOPPED, self.stop_reason or detail("stopped"))
        except Exception as error:  # noqa: BLE001 - e.g. the factory refused the spec
            final = (AccountStatus.ERROR, detail("could_not_start", cause=describe_error(error)))
        finally:
            if client is not None:
                await self._disconnect(client)
            self.manager.runner_finished(self, *final)

    async def _disconnect(self, client: TelegramClientLike) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), clients.DISCONNECT_TIMEOUT)
        disconnected = client.disconnected
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()  # mark it retrieved: the cause was reported already, or is moot
