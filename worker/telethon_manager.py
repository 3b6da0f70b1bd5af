"""The account manager: many Telethon clients on a few event-loop threads, started and stopped safely.

`WORKER_THREADS` threads each run one asyncio loop; each account gets an `AccountRunner` on the least-loaded
loop. A runner connects (always under a timeout), checks authorization, reports `running`, then watches for
a stop request or a dropped connection; failures are classified (`classify`) into statuses: network trouble
is retried with backoff, flood waits are reported with their end time and waited out, revoked or banned
accounts stop. One client's failure never touches another's. Telethon is reached only through the client
factory, so tests run the manager against fakes.

Pacing: every connect — a start, a batch start, a resume, a reconnect — waits for its turn in the worker's
connect bucket (`worker.pacing`, WORKER_CONNECTS_PER_SECOND), and every retry waits a jittered delay, so a
start-all or a network blip never has every client dial at the same moment. Each client connects with its
account's own device identity (`ClientSpec.device`).

Ownership: before a runner starts, the worker must hold the account's lease (`celery_app.leases`); the
presence heartbeat renews all leases at once, and a lease that is lost stops its client at once.

Logins: `send_code` keeps the client that requested the code alive (the code must be signed in with the
same session) until the login completes, is cancelled, or expires after `LOGIN_TTL` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from redis import Redis

from celery_app import keys, leases, report
from celery_app.account_state import AccountState, AccountStatus
from celery_app.contract import DeviceIdentity
from common.redaction import safe_detail
from common.validation import ProxySpec
from worker.pacing import DEFAULT_CONNECTS_PER_SECOND, ConnectPacer, jittered
from worker.status import StatusReporter

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT = 15.0
CALL_TIMEOUT = 30.0
DISCONNECT_TIMEOUT = 5.0
STOP_TIMEOUT = 20.0
LOGIN_TTL = 300.0
MAX_BACKOFF = 300.0
MAX_FLOOD_JITTER = 60.0
QUEUE_NOTICE_SECONDS = 1.0  # a wait for the connect turn longer than this is shown in the status


@dataclass(frozen=True)
class ClientSpec:
    """What a client factory needs; secrets are in clear here and only here (worker memory)."""

    account_id: int
    phone: str
    api_id: int
    api_hash: str
    session: str  # a StringSession, or "" for a new login
    proxy: ProxySpec | None = None
    wire: str = ""  # the encrypted AccountSpec it came from (kept in Redis so the worker can resume it)
    device: DeviceIdentity | None = None  # how the client presents itself to Telegram (the account's own)

    def __repr__(self) -> str:
        return f"ClientSpec(account_id={self.account_id}, api_id={self.api_id}, secrets=***)"


class TelegramClientLike(Protocol):
    """The part of Telethon's `TelegramClient` the manager uses (tests check fakes against the real one)."""

    async def connect(self) -> None: ...
    async def is_user_authorized(self) -> bool: ...
    async def get_me(self, input_peer: bool = False) -> Any: ...
    def disconnect(self) -> Awaitable[Any]: ...  # Telethon: a plain method returning a coroutine
    def is_connected(self) -> bool: ...
    @property
    def disconnected(self) -> asyncio.Future[Any]: ...
    async def send_code_request(self, phone: str, *, force_sms: bool = False) -> Any: ...
    async def sign_in(
        self,
        phone: str | None = None,
        code: str | int | None = None,
        *,
        password: str | None = None,
        phone_code_hash: str | None = None,
    ) -> Any: ...


ClientFactory = Callable[[ClientSpec], TelegramClientLike]


# --- error classification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: AccountStatus
    detail: str
    terminal: bool  # stop the runner (an admin must act)
    wait_seconds: float | None = None  # flood wait


_UNAUTHORIZED = {
    "AuthKeyUnregisteredError": "the session was revoked or logged out (AUTH_KEY_UNREGISTERED)",
    "SessionRevokedError": "the session was revoked (SESSION_REVOKED)",
    "SessionExpiredError": "the session expired (SESSION_EXPIRED)",
    "AuthKeyInvalidError": "the authorization key is invalid (AUTH_KEY_INVALID)",
    "UnauthorizedError": "not authorized",
}
_BANNED = {
    "UserDeactivatedBanError": "the account is banned by Telegram (USER_DEACTIVATED_BAN)",
    "UserDeactivatedError": "the account was deleted or deactivated (USER_DEACTIVATED)",
    "PhoneNumberBannedError": "the phone number is banned (PHONE_NUMBER_BANNED)",
}
_NETWORK = ("ConnectionError", "OSError", "TimeoutError", "InvalidBufferError", "IncompleteReadError", "ServerError")
_PLAIN_CAUSES = {
    "IncompleteReadError": "the server closed the connection",
    "InvalidBufferError": "the server answered with an invalid packet",
    "ConnectionResetError": "the connection was reset",
    "ConnectionAbortedError": "the connection was aborted",
    "ConnectionRefusedError": "connection refused",
    "BrokenPipeError": "the connection broke",
    "TimeoutError": "timed out",
    "InvalidChecksumError": "a corrupted packet arrived",
    "SecurityError": "a packet failed the security checks",
    "AuthKeyNotFound": "the server does not know this authorization key",
}


def _names(error: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(error).__mro__]


def describe_error(error: BaseException) -> str:
    """A short description in words: never the raw text of a protocol error (it may hold bytes, a phone)."""
    names = _names(error)
    if "TypeNotFoundError" in names:
        return "the server sent a reply this client cannot read (unknown constructor: another API layer?)"
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if isinstance(code, int) and isinstance(message, str):  # Telegram's RPC errors: a code and an error name
        token = re.match(r"[A-Z][A-Z0-9_]*", message)
        return f"Telegram error {code}" + (f" {token.group(0)}" if token else "")
    for name in names:
        if name in _PLAIN_CAUSES:
            return _PLAIN_CAUSES[name]
    number = getattr(error, "errno", None)
    if isinstance(error, OSError) and isinstance(number, int) and number > 0:
        return os.strerror(number).lower()
    text = safe_detail(str(error), 120)
    return f"{type(error).__name__}: {text}" if text and type(error).__name__ not in text else text or names[0]


def classify(error: BaseException) -> Outcome:
    """Map an exception (Telethon's, the network's, anything) to the status an admin should see."""
    names = _names(error)
    # Most specific first: Telethon's ban errors are also UnauthorizedErrors (HTTP 401).
    for name, detail in _BANNED.items():
        if name in names:
            return Outcome(AccountStatus.BANNED, detail, terminal=True)
    if "AuthKeyDuplicatedError" in names:
        return Outcome(
            AccountStatus.UNAUTHORIZED,
            "AUTH_KEY_DUPLICATED: the session was used from two places at once; Telegram revoked it, log in again",
            terminal=True,
        )
    for name, detail in _UNAUTHORIZED.items():
        if name in names:
            return Outcome(AccountStatus.UNAUTHORIZED, detail, terminal=True)
    if "FloodWaitError" in names or "FloodPremiumWaitError" in names:
        seconds = float(getattr(error, "seconds", 0) or 0)
        return Outcome(
            AccountStatus.FLOOD_WAIT, f"Telegram asks to wait {seconds:.0f} s", terminal=False, wait_seconds=seconds
        )
    if any(name in names for name in _NETWORK):
        return Outcome(AccountStatus.ERROR, f"network: {describe_error(error)}", terminal=False)
    return Outcome(AccountStatus.ERROR, describe_error(error), terminal=False)


def backoff_delay(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt`: doubling up to MAX_BACKOFF, with jitter so that many
    clients dropped at once do not all dial again at the same moment."""
    return jittered(float(min(MAX_BACKOFF, 2 ** min(attempt, 9))))


def flood_delay(seconds: float) -> float:
    """Seconds to wait out a flood wait: never less than Telegram asked, plus a little at random, so that the
    accounts a flood stopped together do not all come back in the same second."""
    return seconds + random.uniform(0.0, min(MAX_FLOOD_JITTER, max(1.0, seconds * 0.1)))


def operation_holder(worker_name: str, instance: str) -> str:
    """The lease holder of a connection made only for an operation (`worker.operator`): not the runner's, so
    that neither takes the other's lease as its own (`leases.acquire` takes over a holder of the same name)."""
    return leases.holder_id(f"{worker_name}#op", instance)


OPERATION_LEASE_WAIT = 150.0  # a start waits this long for an operation's own connection to end

# --- loops ------------------------------------------------------------------------------------------------


class LoopThread:
    """A thread running one asyncio event loop that hosts many clients."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = asyncio.new_event_loop()
        self.clients = 0
        self._thread = threading.Thread(target=self._run, name=f"telethon-loop-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# --- running accounts -------------------------------------------------------------------------------------


@dataclass
class Identity:
    user_id: int | None = None
    username: str | None = None
    name: str | None = None
    phone: str | None = None


def identity_of(user: Any) -> Identity:
    name = " ".join(part for part in (getattr(user, "first_name", None), getattr(user, "last_name", None)) if part)
    return Identity(
        getattr(user, "id", None), getattr(user, "username", None), name or None, getattr(user, "phone", None)
    )


class AccountRunner:
    """One account's life on one loop: connect, watch, reconnect with backoff, report every change.

    `park` is set when the runner is stopped for a reason outside the control plane's wishes (the fence, the
    worker shutting down): the account stays in this worker's spec registry, to be resumed.
    """

    def __init__(self, manager: AccountManager, spec: ClientSpec, loop_thread: LoopThread) -> None:
        self.manager = manager
        self.spec = spec
        self.loop_thread = loop_thread
        self.run_id = uuid.uuid4().hex[:12]
        self.identity = Identity()
        self.state: AccountState = manager.state(
            spec.account_id, AccountStatus.STARTING, "queued", active=True, run=self.run_id
        )
        self.stop_reason: str | None = None
        self.report_final = True
        self.park = False
        self.keep_lease = False  # do not release the lease at the end (it is not ours to release)
        self.holds_lease = False
        self.client: TelegramClientLike | None = None  # while running: operations use it
        self._stop = asyncio.Event()
        self.done: concurrent.futures.Future[None] | None = None

    def report(self, status: AccountStatus, detail: str = "", until: float | None = None, active: bool = True) -> None:
        self.state = self.manager.state(
            self.spec.account_id, status, detail, until, active, self.identity, run=self.run_id
        )
        self.manager.reporter.report(self.state)

    def request_stop(
        self, reason: str, report_final: bool = True, park: bool = False, keep_lease: bool = False
    ) -> None:
        self.stop_reason = reason
        self.report_final = report_final
        self.park = park
        self.keep_lease = keep_lease
        self.loop_thread.loop.call_soon_threadsafe(self._stop.set)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        return self._stop.is_set()

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
        delay = pacer.reserve()
        if delay <= 0:
            return True
        if delay > QUEUE_NOTICE_SECONDS:
            what = "connect" if attempt == 0 else f"reconnect (attempt {attempt + 1})"
            self.report(AccountStatus.STARTING, f"waiting for its turn to {what} ({pacer.rate:g} per second)")
        if await self._sleep_or_stop(delay):
            pacer.give_back()
            return False
        return True

    async def _watch(self, client: TelegramClientLike) -> None:
        """Return when a stop is requested; raise the connection's own error when it drops."""
        stop_waiter = asyncio.ensure_future(self._stop.wait())
        disconnected = client.disconnected
        try:
            await asyncio.wait({stop_waiter, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
        if self._stop.is_set():
            return
        cause = disconnected.exception() if not disconnected.cancelled() else None  # retrieved: never "unhandled"
        if cause is not None:
            raise cause
        raise ConnectionResetError("the connection to Telegram was closed")

    async def run(self, lease_deadline: float = 0.0) -> None:
        client: TelegramClientLike | None = None
        attempt = 0
        final: tuple[AccountStatus, str] = (AccountStatus.STOPPED, "stopped")
        if not self.holds_lease and not await self._wait_for_lease(lease_deadline):
            log.warning("account %d: its lease stayed with another worker; not started here", self.spec.account_id)
            self.report_final = False
            self.keep_lease = True
            self.manager.runner_finished(self, AccountStatus.STOPPED, "lease held elsewhere")
            return
        try:
            client = self.manager.factory(self.spec)
            while not self._stop.is_set():
                try:
                    if not await self._wait_turn(attempt):
                        break
                    self.report(
                        AccountStatus.STARTING,
                        "connecting" if attempt == 0 else f"reconnecting (attempt {attempt + 1})",
                    )
                    await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT)
                    if not await asyncio.wait_for(client.is_user_authorized(), CALL_TIMEOUT):
                        final = (AccountStatus.UNAUTHORIZED, "the session is not authorized (revoked or logged out)")
                        break
                    self.identity = identity_of(await asyncio.wait_for(client.get_me(), CALL_TIMEOUT))
                    self.report(AccountStatus.RUNNING, "")
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
                    self.report(AccountStatus.ERROR, f"{outcome.detail}; retry {attempt} in {delay:.0f} s")
                    if await self._sleep_or_stop(delay):
                        break
            if self._stop.is_set():
                final = (AccountStatus.STOPPED, self.stop_reason or "stopped")
        except Exception as error:  # noqa: BLE001 - e.g. the factory refused the spec
            final = (AccountStatus.ERROR, f"could not start: {describe_error(error)}")
        finally:
            if client is not None:
                await self._disconnect(client)
            self.manager.runner_finished(self, *final)

    async def _disconnect(self, client: TelegramClientLike) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT)
        disconnected = client.disconnected
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()  # mark it retrieved: the cause was reported already, or is moot


# --- logins -----------------------------------------------------------------------------------------------


@dataclass
class PendingLogin:
    login_id: str
    spec: ClientSpec
    loop_thread: LoopThread
    client: TelegramClientLike
    phone_code_hash: str = ""
    needs_password: bool = False
    expires_at: float = field(default_factory=lambda: time.monotonic() + LOGIN_TTL)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class LoginOutcome:
    state: str  # code_sent | password_needed | authorized | failed
    error: str | None = None
    message: str = ""
    retry: bool = False
    session: str | None = None
    identity: Identity | None = None
    wait_seconds: int | None = None


_LOGIN_ERRORS: dict[str, tuple[str, str, bool]] = {
    # exception name: (error code, message, can retry within the same login)
    "PhoneNumberInvalidError": ("invalid_phone", "Telegram does not accept this phone number", False),
    "PhoneNumberUnoccupiedError": ("invalid_phone", "no Telegram account uses this phone number", False),
    "PhoneNumberBannedError": ("banned", "this phone number is banned by Telegram", False),
    "PhoneCodeInvalidError": ("invalid_code", "the code is wrong; type it again, with spaces like 1 2 3 4 5", True),
    "PhoneCodeEmptyError": ("invalid_code", "the code is empty; type it with spaces like 1 2 3 4 5", True),
    "PhoneCodeExpiredError": (
        "code_expired",
        "the code has expired (or was sent through Telegram as is); request a new one",
        False,
    ),
    "PasswordHashInvalidError": ("wrong_password", "the 2FA password is wrong; try again", True),
    "ApiIdInvalidError": ("api_id_invalid", "Telegram rejects this API ID / API hash pair", False),
    "ApiIdPublishedFloodError": (
        "api_id_invalid",
        "this API ID is published and blocked by Telegram; use your own",
        False,
    ),
}


def login_failure(error: BaseException) -> LoginOutcome:
    names = _names(error)
    for name, (code, message, retry) in _LOGIN_ERRORS.items():
        if name in names:
            return LoginOutcome("failed", code, message, retry)
    outcome = classify(error)
    if outcome.status is AccountStatus.FLOOD_WAIT:
        seconds = int(outcome.wait_seconds or 0)
        return LoginOutcome(
            "failed",
            "flood_wait",
            f"Telegram asks to wait {seconds} s before trying again",
            False,
            wait_seconds=seconds,
        )
    if outcome.status is AccountStatus.BANNED:
        return LoginOutcome("failed", "banned", outcome.detail, False)
    if outcome.detail.startswith("network"):
        return LoginOutcome("failed", "network", f"cannot reach Telegram: {outcome.detail}", False)
    return LoginOutcome("failed", "error", outcome.detail, False)


# --- the manager ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandOutcome:
    ok: bool
    status: AccountStatus
    detail: str = ""
    run: str = ""


class AccountManager:
    """Runs this worker's accounts. Besides the runners it keeps:

    - `parked`: accounts stopped by the fence (cut off from Redis) that this worker resumes by itself as soon
      as it can take their leases again;
    - the spec registry in Redis (`keys.worker_specs`): the encrypted specs of the accounts it should run,
      so that a restarted process resumes them without waiting for the backend.
    """

    def __init__(
        self,
        factory: ClientFactory,
        redis: Redis,
        worker_name: str,
        instance: str,
        threads: int,
        lease_ttl: float,
        reporter: StatusReporter | None = None,
        pacer: ConnectPacer | None = None,
    ) -> None:
        self.factory = factory
        self.pacer = pacer or ConnectPacer(DEFAULT_CONNECTS_PER_SECOND)
        self.redis = redis
        self.worker_name = worker_name
        self.holder = leases.holder_id(worker_name, instance)
        self.operation_holder = operation_holder(worker_name, instance)
        self.plugins: Any = None  # a worker.plugins.PluginHost, when the worker runs plugins
        self._plugins_version: int | None = None
        self.lease_ttl = lease_ttl
        self.reporter = reporter or StatusReporter(redis, self.holder)
        self.loops = [LoopThread(index) for index in range(threads)]
        self.runners: dict[int, AccountRunner] = {}
        self.parked: dict[int, ClientSpec] = {}
        self.logins: dict[str, PendingLogin] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._specs_key = keys.worker_specs(worker_name)

    def open(self) -> None:
        self.reporter.start()

    # --- states

    def state(
        self,
        account_id: int,
        status: AccountStatus,
        detail: str = "",
        until: float | None = None,
        active: bool = False,
        identity: Identity | None = None,
        run: str = "",
    ) -> AccountState:
        who = identity or Identity()
        return AccountState(
            account_id,
            status,
            self.worker_name,
            safe_detail(detail),
            until,
            active,
            who.user_id,
            who.username,
            who.name,
            time.time(),
            run,
        )

    def _least_loaded_loop(self) -> LoopThread:
        return min(self.loops, key=lambda loop_thread: loop_thread.clients)

    # --- the spec registry (Redis) and the heartbeat report

    def remember(self, specs: list[ClientSpec]) -> None:
        """Record specs in this worker's registry (one write), so a restart resumes them."""
        entries = {str(spec.account_id): spec.wire for spec in specs if spec.wire}
        if entries:
            self.redis.hset(self._specs_key, mapping=entries)

    def _forget(self, account_id: int) -> None:
        with self._lock:
            if account_id in self.runners or account_id in self.parked:
                return  # started again meanwhile (a restart): its entry stays
        with contextlib.suppress(Exception):
            self.redis.hdel(self._specs_key, str(account_id))

    def report_json(self) -> str:
        """The accounts that have a runner here, by status: rewritten into Redis with every heartbeat."""
        with self._lock:
            states = [(account_id, runner.state.status) for account_id, runner in self.runners.items()]
        return report.encode(states)

    def reassert(self) -> None:
        """After Redis lost its data: write every runner's status and the registry again."""
        with self._lock:
            runners = list(self.runners.values())
            specs = [runner.spec for runner in runners] + list(self.parked.values())
        for runner in runners:
            self.reporter.report(runner.state)
        self.remember(specs)
        if self.plugins is not None:
            self.plugins.reassert()

    # --- commands (called from Celery task threads)

    def start(self, spec: ClientSpec, wait_for_lease: float = 0.0) -> CommandOutcome:
        with self._lock:
            if self._closed:
                return CommandOutcome(False, AccountStatus.STOPPED, "the worker is shutting down")
            existing = self.runners.get(spec.account_id)
            if existing is not None:
                if existing.holds_lease:
                    self.reporter.report(existing.state)  # re-assert it: the control plane may think it lost
                return CommandOutcome(True, existing.state.status, "already running on this worker", existing.run_id)
        acquired, holder = leases.acquire(self.redis, spec.account_id, self.holder, self.lease_ttl)
        other = leases.worker_of_holder(holder)
        if not acquired and holder == self.operation_holder:
            wait_for_lease = max(wait_for_lease, OPERATION_LEASE_WAIT)  # connected here for an operation
        if not acquired and wait_for_lease <= 0:
            with self._lock:
                self.parked.pop(spec.account_id, None)
            self._forget(spec.account_id)
            return CommandOutcome(False, AccountStatus.STOPPED, f"refused: the account is running on worker '{other}'")
        with self._lock:
            if spec.account_id in self.runners:  # a concurrent start won the race on this worker
                runner = self.runners[spec.account_id]
                return CommandOutcome(True, runner.state.status, "already running on this worker", runner.run_id)
            loop_thread = self._least_loaded_loop()
            runner = AccountRunner(self, spec, loop_thread)
            runner.holds_lease = acquired
            self.runners[spec.account_id] = runner
            self.parked.pop(spec.account_id, None)
            loop_thread.clients += 1
        if acquired:
            runner.report(AccountStatus.STARTING, "queued")
        runner.done = loop_thread.submit(runner.run(lease_deadline=time.monotonic() + wait_for_lease))
        if acquired:
            return CommandOutcome(True, AccountStatus.STARTING, "starting", runner.run_id)
        return CommandOutcome(
            True, AccountStatus.STARTING, f"waiting for worker '{other}' to let go of the account", runner.run_id
        )

    def runner_finished(self, runner: AccountRunner, status: AccountStatus, detail: str) -> None:
        """Called on the runner's loop when it ends: release the lease, report the final status.

        Unless the runner was parked, the account leaves this worker's registry: it was stopped, moved, or
        needs an admin, and a restart must not bring it back.
        """
        account_id = runner.spec.account_id
        with self._lock:
            if self.runners.get(account_id) is runner:
                del self.runners[account_id]
                runner.loop_thread.clients -= 1
        if runner.report_final:
            runner.report(status, detail, active=False)
        release = runner.holds_lease and not runner.keep_lease
        if release or not runner.park:
            self._settle(account_id, release=release, forget=not runner.park)

    def _settle(self, account_id: int, release: bool, forget: bool) -> None:
        def settle() -> None:
            self.reporter.flush(2.0)  # the final status is written while the lease is still ours
            if forget:
                self._forget(account_id)
            if release:
                with contextlib.suppress(Exception):
                    leases.release(self.redis, account_id, self.holder)

        threading.Thread(target=settle, name=f"settle-{account_id}", daemon=True).start()

    def stop(self, account_id: int, reason: str = "stopped", timeout: float = STOP_TIMEOUT) -> CommandOutcome:
        with self._lock:
            runner = self.runners.get(account_id)
            parked = self.parked.pop(account_id, None)
        if runner is None:
            self._forget(account_id)
            detail = "stopped (it was waiting to resume)" if parked else "not running on this worker"
            return CommandOutcome(True, AccountStatus.STOPPED, detail)
        runner.request_stop(reason)
        if runner.done is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, Exception):
                runner.done.result(timeout)
        self.reporter.flush(2.0)
        deadline = time.monotonic() + 2.0
        while leases.holder_of(self.redis, account_id) == self.holder and time.monotonic() < deadline:
            time.sleep(0.01)
        return CommandOutcome(True, AccountStatus.STOPPED, reason, runner.run_id)

    def restart(self, spec: ClientSpec) -> CommandOutcome:
        self.stop(spec.account_id, "restarting")
        return self.start(spec, wait_for_lease=2.0)

    def runner_of(self, account_id: int) -> AccountRunner | None:
        with self._lock:
            return self.runners.get(account_id)

    def loop_for(self, account_id: int) -> LoopThread:
        """The loop of the account's runner, or the least loaded one."""
        with self._lock:
            runner = self.runners.get(account_id)
            return runner.loop_thread if runner is not None else self._least_loaded_loop()

    # --- plugins (worker.plugins): loaded while an account runs, re-applied when their configuration changes

    async def attach_plugins(self, account_id: int, client: TelegramClientLike) -> None:
        if self.plugins is None:
            return
        from celery_app import plugin_config

        loop = asyncio.get_running_loop()
        try:
            configs = (await loop.run_in_executor(None, plugin_config.read_desired, self.redis, [account_id])).get(
                account_id, {}
            )
        except Exception as error:  # noqa: BLE001 - the account runs without plugins rather than not at all
            log.warning("account %d: plugin configuration unavailable (%s)", account_id, describe_error(error))
            configs = {}
        self.plugins.watch(loop)
        try:
            await self.plugins.attach(account_id, client, configs)
        except Exception:
            log.exception("account %d: plugins could not be attached", account_id)

    async def detach_plugins(self, account_id: int) -> None:
        if self.plugins is None:
            return
        try:
            await self.plugins.detach(account_id)
        except Exception:
            log.exception("account %d: plugins could not be detached", account_id)

    def sync_plugins(self) -> None:
        """Called with every heartbeat: when any account's plugin configuration changed (a version counter),
        re-read those of the accounts running here and apply them without restarting anything."""
        if self.plugins is None:
            return
        from celery_app import plugin_config

        version = plugin_config.version(self.redis)
        if version is None or version == self._plugins_version:
            return  # unchanged, or Redis lost it and the control plane has not written it again yet
        with self._lock:
            running = {account_id: runner for account_id, runner in self.runners.items() if runner.client is not None}
        desired = plugin_config.read_desired(self.redis, list(running))
        for account_id, runner in running.items():
            runner.loop_thread.submit(self._apply_plugins(account_id, desired.get(account_id, {})))
        self._plugins_version = version

    async def _apply_plugins(self, account_id: int, configs: dict[str, Any]) -> None:
        runner = self.runner_of(account_id)
        if runner is None or runner.client is None:
            return
        try:
            await self.plugins.apply(account_id, configs)
        except Exception:
            log.exception("account %d: plugin configuration could not be applied", account_id)

    def status_of(self, account_id: int) -> AccountState | None:
        with self._lock:
            runner = self.runners.get(account_id)
        return runner.state if runner else None

    def running_states(self) -> list[AccountState]:
        with self._lock:
            return [runner.state for runner in self.runners.values()]

    def held_accounts(self) -> list[int]:
        with self._lock:
            return [account_id for account_id, runner in self.runners.items() if runner.holds_lease]

    def lease_lost(self, account_ids: list[int]) -> None:
        """Another worker holds these leases now: stop the clients at once (their registry entries go)."""
        for account_id in account_ids:
            with self._lock:
                runner = self.runners.get(account_id)
            if runner is not None:
                log.error("account %d: another worker holds its lease now; stopping its client", account_id)
                # The status is written only while the lease is ours or free: the new holder's stays.
                runner.request_stop("its lease was taken over by another worker", keep_lease=True)

    def fence(self, reason: str) -> None:
        """Cut off from Redis for too long: stop every client before the leases can expire elsewhere.

        The accounts are parked: once Redis answers again the worker takes their leases back (if nobody else
        has) and restarts them by itself.
        """
        with self._lock:
            runners = list(self.runners.values())
            for runner in runners:
                self.parked[runner.spec.account_id] = runner.spec
        if runners:
            log.error("%s: stopping all %d clients", reason, len(runners))
        for runner in runners:
            runner.request_stop("fenced", report_final=False, park=True, keep_lease=True)
            self.reporter.report(
                self.state(runner.spec.account_id, AccountStatus.LOST, reason, active=False, run=runner.run_id)
            )

    def resume_parked(self) -> int:
        """Restart parked accounts still in this worker's registry (the control plane removes an account it
        stopped or moved meanwhile) whose leases this worker can take again; drop the others."""
        with self._lock:
            parked = [spec for account_id, spec in self.parked.items() if account_id not in self.runners]
        if not parked:
            return 0
        wanted = set(self.redis.hkeys(self._specs_key))
        resumed = 0
        for spec in parked:
            if str(spec.account_id) not in wanted and spec.wire:
                with self._lock:
                    self.parked.pop(spec.account_id, None)
                log.info("account %d: stopped or moved while this worker was cut off; not resumed", spec.account_id)
                continue
            outcome = self.start(spec)
            if outcome.ok:
                resumed += 1
            else:
                log.warning("account %d: not resumed: %s", spec.account_id, outcome.detail)
        if resumed:
            log.info("resumed %d account(s) parked while Redis was out of reach", resumed)
        return resumed

    def shutdown(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every client (the worker is going away: its accounts will read as lost), then the loops.

        The registry keeps the accounts, so the next start of this worker resumes them.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runners = list(self.runners.values())
        for runner in runners:
            runner.request_stop("worker stopped", report_final=False, park=True)
        deadline = time.monotonic() + timeout
        for runner in runners:
            if runner.done is not None:
                with contextlib.suppress(Exception):
                    runner.done.result(max(0.1, deadline - time.monotonic()))
        for runner in runners:
            self.reporter.report(
                self.state(
                    runner.spec.account_id, AccountStatus.LOST, "worker stopped", active=False, run=runner.run_id
                )
            )
        for login_id in list(self.logins):
            self.cancel_login(login_id)
        self.reporter.close()
        for runner in runners:
            with contextlib.suppress(Exception):
                leases.release(self.redis, runner.spec.account_id, self.holder)
        for loop_thread in self.loops:
            loop_thread.close()

    # --- logins

    def _login(self, login_id: str) -> PendingLogin | None:
        with self._lock:
            login = self.logins.get(login_id)
            if login is not None and time.monotonic() > login.expires_at:
                self.logins.pop(login_id, None)
                login.loop_thread.submit(self._close_client(login.client))
                return None
            return login

    async def _close_client(self, client: TelegramClientLike) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT)

    def expire_logins(self) -> None:
        with self._lock:
            expired = [login_id for login_id, login in self.logins.items() if time.monotonic() > login.expires_at]
        for login_id in expired:
            self._login(login_id)

    def send_code(self, login_id: str, spec: ClientSpec) -> LoginOutcome:
        self.expire_logins()
        loop_thread = self._least_loaded_loop()

        # An admin is waiting: a login goes ahead of the queue, but its connect counts in the worker's pace.
        self.pacer.reserve()

        async def begin() -> LoginOutcome:
            client = self.factory(spec)
            try:
                await asyncio.wait_for(client.connect(), CONNECT_TIMEOUT)
                sent = await asyncio.wait_for(client.send_code_request(spec.phone), CALL_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - classified for the admin
                await self._close_client(client)
                return login_failure(error)
            with self._lock:
                self.logins[login_id] = PendingLogin(
                    login_id, spec, loop_thread, client, str(getattr(sent, "phone_code_hash", "") or "")
                )
            return LoginOutcome("code_sent", message="code sent")

        return loop_thread.call(begin(), CONNECT_TIMEOUT + CALL_TIMEOUT + 5)

    def _finish(self, login: PendingLogin, attempt: Callable[[], Awaitable[Any]]) -> LoginOutcome:
        async def run() -> LoginOutcome:
            try:
                await asyncio.wait_for(attempt(), CALL_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - classified for the admin
                if "SessionPasswordNeededError" in _names(error):
                    login.needs_password = True
                    return LoginOutcome(
                        "password_needed", message="this account has two-step verification: send the password"
                    )
                outcome = login_failure(error)
                if not outcome.retry:
                    self._drop_login(login)
                    await self._close_client(login.client)
                return outcome
            try:
                me = identity_of(await asyncio.wait_for(login.client.get_me(), CALL_TIMEOUT))
                session = str(login.client.session.save())  # type: ignore[attr-defined]
            except Exception as error:  # noqa: BLE001
                self._drop_login(login)
                await self._close_client(login.client)
                return login_failure(error)
            self._drop_login(login)
            await self._close_client(login.client)
            return LoginOutcome("authorized", message="logged in", session=session, identity=me)

        return login.loop_thread.call(run(), CALL_TIMEOUT * 2 + 5)

    def _drop_login(self, login: PendingLogin) -> None:
        with self._lock:
            if self.logins.get(login.login_id) is login:
                del self.logins[login.login_id]

    def submit_code(self, login_id: str, code: str) -> LoginOutcome:
        login = self._login(login_id)
        if login is None:
            return LoginOutcome("failed", "unknown_login", "this login has expired or was cancelled; start again")
        with login.lock:
            if login.needs_password:
                return LoginOutcome("password_needed", message="send the two-step verification password")
            return self._finish(
                login,
                lambda: login.client.sign_in(phone=login.spec.phone, code=code, phone_code_hash=login.phone_code_hash),
            )

    def submit_password(self, login_id: str, password: str) -> LoginOutcome:
        login = self._login(login_id)
        if login is None:
            return LoginOutcome("failed", "unknown_login", "this login has expired or was cancelled; start again")
        with login.lock:
            if not login.needs_password:
                return LoginOutcome(
                    "failed", "unexpected_password", "no password was asked for: send the code first", True
                )
            return self._finish(login, lambda: login.client.sign_in(password=password))

    def cancel_login(self, login_id: str) -> bool:
        with self._lock:
            login = self.logins.pop(login_id, None)
        if login is None:
            return False
        with contextlib.suppress(Exception):
            login.loop_thread.call(self._close_client(login.client), DISCONNECT_TIMEOUT + 1)
        return True

    @staticmethod
    def new_login_id() -> str:
        return uuid.uuid4().hex
