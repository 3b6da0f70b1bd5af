"""The account manager: many Telegram clients on a few event-loop threads, started and stopped safely.

`WORKER_THREADS` threads each run one asyncio loop (`worker.loops`); each account gets an `AccountRunner`
(`worker.runner`) on the least-loaded loop. A runner connects (always under a timeout), checks authorization,
reports `running`, then watches for a stop request or a dropped connection; failures are classified
(`worker.failures`) into statuses: network trouble is retried with backoff, flood waits are reported with their
end time and waited out, revoked or banned accounts stop. One client's failure never touches another's.
Telethon is reached only through the client factory, so tests run the manager against fakes.

Pacing: every connect — a start, a batch start, a resume, a reconnect — waits for its turn in the worker's
connect bucket (`worker.pacing`, WORKER_CONNECTS_PER_SECOND), and every retry waits a jittered delay, so a
start-all or a network blip never has every client dial at the same moment. Each client connects with its
account's own device identity (`ClientSpec.device`).

Ownership: before a runner starts, the worker must hold the account's lease (`celery_app.leases`); the
presence heartbeat renews all leases at once, and a lease that is lost stops its client at once.

Capacity: at most `max_accounts` (WORKER_MAX_ACCOUNTS) run or wait parked here; a start beyond is refused with
the reason (`worker_full`), which the account's status shows. Thousands of clients stay cheap: see
`worker.collector` (garbage-collector pauses) and `worker.telegram` (what each client costs).

Logins (`worker.login`): `send_code` keeps the client that requested the code alive (the code must be signed
in with the same session) until the login completes, is cancelled, or expires after `LOGIN_TTL` seconds.
Plugins (`worker.plugin_hooks`): loaded while an account runs; only then does its client receive updates.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from celery_app import keys, leases, report
from celery_app.account_state import AccountState, AccountStatus
from common.details import Detail, detail
from common.redaction import safe_detail
from worker.clients import (
    ClientFactory,
    ClientSpec,
    Identity,
)
from worker.collector import COLLECTOR
from worker.login import LoginMethods, PendingLogin
from worker.loops import LoopThread, open_files_for
from worker.pacing import DEFAULT_CONNECTS_PER_SECOND, ConnectPacer
from worker.plugin_hooks import PluginMethods
from worker.runner import OPERATION_LEASE_WAIT, AccountRunner, operation_holder
from worker.status import StatusReporter

log = logging.getLogger(__name__)


STOP_TIMEOUT = 20.0
STOPPING_FLUSH_SECONDS = 2.0  # how long a stop waits for its "stopping" to be written (Redis may be away)
REFUSALS_WARNED_EVERY = 60.0  # seconds: starts refused at capacity are logged at most this often


# --- the manager ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandOutcome:
    ok: bool
    status: AccountStatus
    detail: Detail | None = None
    run: str = ""


class AccountManager(LoginMethods, PluginMethods):
    """Runs this worker's accounts. Besides the runners it keeps:

    - `parked`: accounts stopped by the fence (cut off from Redis) that this worker resumes by itself as soon
      as it can take their leases again;
    - the spec registry in Redis (`keys.worker_specs`): the encrypted specs of the accounts it should run,
      so that a restarted process resumes them without waiting for the backend;
    - `logins`: the logins in progress (`worker.login.LoginMethods`, mixed in: `send_code`, `submit_code`, ...).
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
        max_accounts: int | None = None,
    ) -> None:
        self.factory = factory
        self.max_accounts = max_accounts  # WORKER_MAX_ACCOUNTS: starts beyond it are refused (None: no limit)
        self.pacer = pacer or ConnectPacer(DEFAULT_CONNECTS_PER_SECOND)
        self.redis = redis
        self.worker_name = worker_name
        self.holder = leases.holder_id(worker_name, instance)
        self.operation_holder = operation_holder(worker_name, instance)
        self.plugins: Any = None  # a worker.plugins.host.PluginHost, when the worker runs plugins (`PluginMethods`)
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
        self._refused = 0  # starts refused at capacity since the last warning about them
        self._refused_warned = 0.0

    def open(self) -> None:
        COLLECTOR.install()  # short garbage-collector pauses with thousands of clients (`worker.collector`)
        if self.max_accounts is not None:
            open_files_for(self.max_accounts)
        self.reporter.start()

    # --- states

    def state(
        self,
        account_id: int,
        status: AccountStatus,
        said: Detail | None = None,
        until: float | None = None,
        active: bool = False,
        identity: Identity | None = None,
        run: str = "",
    ) -> AccountState:
        """What the worker says about an account: the detail in English (safe, short) and as its code."""
        who = identity or Identity()
        return AccountState(
            account_id,
            status,
            self.worker_name,
            safe_detail(said.text) if said else "",
            until,
            active,
            who.user_id,
            who.username,
            who.name,
            time.time(),
            run,
            code=said.encode() if said else "",
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
                return CommandOutcome(False, AccountStatus.STOPPED, detail("shutting_down"))
            existing = self.runners.get(spec.account_id)
            if existing is not None:
                if existing.holds_lease:
                    self.reporter.report(existing.state)  # re-assert it: the control plane may think it lost
                return CommandOutcome(True, existing.state.status, detail("already_running"), existing.run_id)
            full = not self._has_room(spec.account_id)
        if full:
            return self._refuse_full(spec.account_id)
        acquired, holder = leases.acquire(self.redis, spec.account_id, self.holder, self.lease_ttl)
        other = leases.worker_of_holder(holder)
        if not acquired and holder == self.operation_holder:
            wait_for_lease = max(wait_for_lease, OPERATION_LEASE_WAIT)  # connected here for an operation
        if not acquired and wait_for_lease <= 0:
            with self._lock:
                self.parked.pop(spec.account_id, None)
            self._forget(spec.account_id)
            if not holder:  # held by nobody: the grant was let go, no replica acknowledged it (`leases.acquire`)
                return CommandOutcome(False, AccountStatus.STOPPED, detail("lease_unconfirmed"))
            return CommandOutcome(False, AccountStatus.STOPPED, detail("running_elsewhere", worker=other))
        with self._lock:
            if spec.account_id in self.runners:  # a concurrent start won the race on this worker
                runner = self.runners[spec.account_id]
                return CommandOutcome(True, runner.state.status, detail("already_running"), runner.run_id)
            full = not self._has_room(spec.account_id)  # concurrent starts took the last places meanwhile
            if not full:
                loop_thread = self._least_loaded_loop()
                runner = AccountRunner(self, spec, loop_thread)
                runner.holds_lease = acquired
                self.runners[spec.account_id] = runner
                self.parked.pop(spec.account_id, None)
                loop_thread.clients += 1
        if full:
            if acquired:
                with contextlib.suppress(Exception):
                    leases.release(self.redis, spec.account_id, self.holder)
            return self._refuse_full(spec.account_id)
        if acquired:
            runner.report(AccountStatus.STARTING, detail("queued"))
        runner.done = loop_thread.submit(runner.run(lease_deadline=time.monotonic() + wait_for_lease))
        if acquired:
            return CommandOutcome(True, AccountStatus.STARTING, detail("starting"), runner.run_id)
        return CommandOutcome(True, AccountStatus.STARTING, detail("waiting_for_worker", worker=other), runner.run_id)

    def _has_room(self, account_id: int) -> bool:
        """Whether one more account may run here (lock held): parked accounts keep their places."""
        if self.max_accounts is None:
            return True
        taken = len(self.runners) + len(self.parked) - (account_id in self.parked)
        return taken < self.max_accounts

    def _refuse_full(self, account_id: int) -> CommandOutcome:
        """Refuse a start at capacity: the account reads stopped, with the reason, where the control plane and
        people see it (and leaves this worker's registry); the control plane tries again later, with its backoff,
        as after any start that failed."""
        said = detail("worker_full", worker=self.worker_name, limit=self.max_accounts)
        self.reporter.report(self.state(account_id, AccountStatus.STOPPED, said))
        with self._lock:
            self.parked.pop(account_id, None)
            self._refused += 1
            now = time.monotonic()
            warn = now - self._refused_warned >= REFUSALS_WARNED_EVERY
            if warn:
                refused, self._refused, self._refused_warned = self._refused, 0, now
        if warn:
            log.warning("%s: %d start(s) refused", said.text, refused)
        self._forget(account_id)
        return CommandOutcome(False, AccountStatus.STOPPED, said)

    def runner_finished(self, runner: AccountRunner, status: AccountStatus, said: Detail) -> None:
        """Called on the runner's loop when it ends: release the lease, report the final status.

        Unless the runner was parked, the account leaves this worker's registry: it was stopped, moved, or
        needs an admin, and a restart must not bring it back.
        """
        account_id = runner.spec.account_id
        with self._lock:
            if self.runners.get(account_id) is runner:
                del self.runners[account_id]
                runner.loop_thread.clients -= 1
            running = len(self.runners)
        COLLECTOR.run_ended(running)
        if runner.report_final:
            runner.report(status, said, active=False)
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

    def stop(self, account_id: int, reason: Detail | None = None, timeout: float = STOP_TIMEOUT) -> CommandOutcome:
        with self._lock:
            runner = self.runners.get(account_id)
            parked = self.parked.pop(account_id, None)
        if runner is None:
            self._forget(account_id)
            said = detail("parked_stopped") if parked else detail("not_running_here")
            return CommandOutcome(True, AccountStatus.STOPPED, said)
        reason = reason or detail("stopped")
        self._announce_stopping([runner], reason)
        runner.request_stop(reason)
        if runner.done is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError, Exception):
                runner.done.result(timeout)
        self.reporter.flush(2.0)
        deadline = time.monotonic() + 2.0
        while leases.holder_of(self.redis, account_id, self.holder) == self.holder and time.monotonic() < deadline:
            time.sleep(0.01)
        return CommandOutcome(True, AccountStatus.STOPPED, reason, runner.run_id)

    def _announce_stopping(self, runners: list[AccountRunner], reason: Detail) -> None:
        """Say "stopping", written, before the clients let go: a client disconnects before its runner's final
        status is written (at shutdown, before every runner has stopped), and in between the account must not
        read as running while nothing runs."""
        announced = [runner for runner in runners if runner.holds_lease]
        for runner in announced:
            runner.report(AccountStatus.STOPPING, reason)
        if announced:
            self.reporter.flush(STOPPING_FLUSH_SECONDS)

    def restart(self, spec: ClientSpec) -> CommandOutcome:
        self.stop(spec.account_id, detail("restarting"))
        return self.start(spec, wait_for_lease=2.0)

    def runner_of(self, account_id: int) -> AccountRunner | None:
        with self._lock:
            return self.runners.get(account_id)

    def loop_for(self, account_id: int) -> LoopThread:
        """The loop of the account's runner, or the least loaded one."""
        with self._lock:
            runner = self.runners.get(account_id)
            return runner.loop_thread if runner is not None else self._least_loaded_loop()

    def status_of(self, account_id: int) -> AccountState | None:
        with self._lock:
            runner = self.runners.get(account_id)
        return runner.state if runner else None

    def running_specs(self) -> list[ClientSpec]:
        with self._lock:
            return [runner.spec for runner in self.runners.values()]

    def running_states(self) -> list[AccountState]:
        with self._lock:
            return [runner.state for runner in self.runners.values()]

    def held_accounts(self) -> list[int]:
        with self._lock:
            return [account_id for account_id, runner in self.runners.items() if runner.holds_lease]

    def lease_lost(self, account_ids: list[int]) -> None:
        """Another instance holds these leases now, or the control plane gave the accounts to another worker:
        stop the clients at once (their registry entries go), then let go of what is still ours, so that the
        worker they were given to can take them without waiting for the leases to expire."""
        for account_id in account_ids:
            with self._lock:
                runner = self.runners.get(account_id)
            if runner is not None:
                log.error("account %d: given to another worker, or its lease taken; stopping its client", account_id)
                runner.request_stop(detail("lease_taken"))

    def fence(self, reason: Detail) -> None:
        """Cut off from Redis for too long: stop every client before the leases can expire elsewhere.

        The accounts are parked: once Redis answers again the worker takes their leases back (if nobody else
        has) and restarts them by itself.
        """
        with self._lock:
            runners = list(self.runners.values())
            for runner in runners:
                self.parked[runner.spec.account_id] = runner.spec
        if runners:
            log.error("%s: stopping all %d clients", reason.text, len(runners))
        for runner in runners:
            runner.request_stop(detail("worker_stopped"), report_final=False, park=True, keep_lease=True)
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
        self._announce_stopping(runners, detail("worker_stopped"))
        for runner in runners:
            runner.request_stop(detail("worker_stopped"), report_final=False, park=True)
        deadline = time.monotonic() + timeout
        for runner in runners:
            if runner.done is not None:
                with contextlib.suppress(Exception):
                    runner.done.result(max(0.1, deadline - time.monotonic()))
        for runner in runners:
            self.reporter.report(
                self.state(
                    runner.spec.account_id,
                    AccountStatus.LOST,
                    detail("worker_stopped"),
                    active=False,
                    run=runner.run_id,
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
