"""Running accounts: start, stop, restart, move to another worker, remove, and start or stop all of a worker's.

Every command records the desired state first and checks the target worker is online and active before
dispatching; when it is not, the caller gets a clear refusal, or (`when_back=True`) the backend starts the
account when the worker is back. A stopped, moved or removed account is also taken off its worker's spec
registry, so the worker does not resume it by itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError

from backend.account_base import AccountServiceBase, account_spec, not_assigned
from backend.dispatch import WorkerDidNotAnswer, WorkerRejectedCall
from backend.errors import AccountError, WorkerUnavailable
from celery_app import keys
from celery_app.contract import MAX_BATCH, AccountRef, AccountSpec, StartAccount, StartAccounts, TaskName
from database import accounts as accounts_db
from database import workers as workers_db
from database.audit import audited, named, plus_results
from database.models import DesiredState

log = logging.getLogger(__name__)
_ACCOUNT = named(("account", "account_id"))
STOP_TIMEOUT = 30.0
BULK_TIMEOUT = 120.0
START_ANSWER_TIMEOUT = 15.0


@dataclass(frozen=True)
class ActionResult:
    account_id: int
    message: str
    dispatched: bool
    run: str = ""  # the runner the worker started or found: its states carry the same `run`


class AccountLifecycle(AccountServiceBase):
    @audited("account.start", _ACCOUNT, params=("when_back",))
    def start(self, account_id: int, actor: str, when_back: bool = False) -> ActionResult:
        """Record the desired state (with its event), check the worker, send the start and wait for its answer.

        The account and its worker are read as one row and the desired state written by id, in Core: the work
        before the message leaves is a few statements (`bench/dispatch.py` times it against Celery's ping).
        """
        with self.sessions.begin() as session:
            account = accounts_db.account_for_start(session, account_id)
            if account.session_enc is None:
                raise AccountError(f"account {account_id} has no session: log in first", "no_session", id=account_id)
            name: str | None = account.worker_name
            if name is None:
                raise not_assigned(account_id)
            try:
                self._ensure_usable(name, account.worker_active, account.worker_key_pending is not None)
                usable = True
            except WorkerUnavailable as error:
                if not when_back:
                    raise WorkerUnavailable(
                        f"{error}; or ask to start it when the worker is back",
                        f"{error.code}_start_later",
                        **error.values,
                    ) from None
                usable = False
            accounts_db.request_desired_state(session, account_id, account.desired_state, DesiredState.RUNNING, actor)
            if not usable:
                return ActionResult(account_id, f"account {account_id} will start when worker {name!r} is back", False)
            spec = account_spec(account)
        answer = self._run_on_worker(
            name, account_id, "start", TaskName.START_ACCOUNT, StartAccount(spec=spec), START_ANSWER_TIMEOUT
        )
        return ActionResult(
            account_id,
            f"account {account_id} on {name}: {answer.get('detail', 'starting')}",
            True,
            str(answer.get("run") or ""),
        )

    def _forget_on_worker(self, worker: str | None, account_id: int) -> None:
        """The worker must not resume this account by itself (it is stopped, moved or removed)."""
        if worker is not None:
            self.redis.hdel(keys.worker_specs(worker), str(account_id))

    @audited("account.stop", _ACCOUNT)
    def stop(self, account_id: int, actor: str) -> ActionResult:
        with self.sessions.begin() as session:
            account = accounts_db.get_account(session, account_id)
            accounts_db.set_desired_state(session, account, DesiredState.STOPPED, actor)
            name = self._worker_name(session, account) if account.worker_id is not None else None
        self._forget_on_worker(name, account_id)
        if name is None or not self._worker_online(name):
            return ActionResult(account_id, f"account {account_id} is not running (its worker is offline)", False)
        try:
            answer = self.dispatcher.call(name, TaskName.STOP_ACCOUNT, AccountRef(account_id=account_id), STOP_TIMEOUT)
        except WorkerDidNotAnswer as error:
            raise AccountError(
                f"{error}; the account stays marked to stop", "no_answer_stays_stopped", **error.values
            ) from None
        return ActionResult(account_id, f"account {account_id} stopped ({answer.get('detail', 'stopped')})", True)

    @audited("account.restart", _ACCOUNT)
    def restart(self, account_id: int, actor: str) -> ActionResult:
        """Stop and start again on its worker; returns once the worker has started the new run (`run`)."""
        with self.sessions.begin() as session:
            account = accounts_db.get_account(session, account_id)
            if account.session_enc is None:
                raise AccountError(f"account {account_id} has no session: log in first", "no_session", id=account_id)
            name = self._worker_name(session, account)
            self._usable_worker(session, name)
            accounts_db.set_desired_state(session, account, DesiredState.RUNNING, actor)
            spec = account_spec(account)
        answer = self._run_on_worker(
            name,
            account_id,
            "restart",
            TaskName.RESTART_ACCOUNT,
            StartAccount(spec=spec, wait_for_lease=2.0),
            STOP_TIMEOUT,
        )
        return ActionResult(
            account_id, f"restarting account {account_id} on {name}", True, str(answer.get("run") or "")
        )

    def _run_on_worker(
        self,
        name: str,
        account_id: int,
        verb: Literal["start", "restart"],
        task: TaskName,
        payload: StartAccount,
        timeout: float,
    ) -> dict[str, Any]:
        """Ask the worker to (re)start an account; its refusal, or its silence, as an AccountError with a code
        (`start_refused`/`restart_refused`, or `no_answer_will_retry`: the account stays marked to run)."""
        try:
            answer = self.dispatcher.call(name, task, payload, timeout)
        except WorkerRejectedCall as error:
            raise AccountError(str(error), error.code, **error.values) from None
        except WorkerDidNotAnswer as error:
            raise AccountError(
                f"{error}; the account stays marked to run and the backend will retry",
                "no_answer_will_retry",
                **error.values,
            ) from None
        if not answer.get("ok"):
            problem = str(answer.get("detail") or answer.get("message"))
            raise AccountError(
                f"worker {name!r} did not {verb} account {account_id}: {problem}",
                "start_refused" if verb == "start" else "restart_refused",
                worker=name,
                id=account_id,
                problem=problem,
            )
        return answer

    @audited("account.move", named(("account", "account_id"), ("worker", "to_worker")))
    def move(self, account_id: int, to_worker: str, actor: str) -> ActionResult:
        """Stop on the old worker (its lease is released), then start on the new one if it should run."""
        with self.sessions() as session:
            account = accounts_db.get_account(session, account_id)
            target = self._usable_worker(session, to_worker)
            old = self._worker_name(session, account) if account.worker_id is not None else None
            if old == target.name:
                raise AccountError(
                    f"account {account_id} is already on worker {to_worker!r}",
                    "already_on_worker",
                    id=account_id,
                    worker=to_worker,
                )
            should_run = account.desired_state == DesiredState.RUNNING.value and account.session_enc is not None
        self._forget_on_worker(old, account_id)
        if old is not None and self._worker_online(old):
            try:
                self.dispatcher.call(old, TaskName.STOP_ACCOUNT, AccountRef(account_id=account_id), STOP_TIMEOUT)
            except WorkerDidNotAnswer:
                pass  # the new worker waits for the old lease to lapse; the old worker fences itself
        with self.sessions.begin() as session:
            account = accounts_db.get_account(session, account_id)
            accounts_db.assign_worker(session, account, workers_db.get_worker(session, target.name), actor, old)
            spec = account_spec(account) if should_run else None
        self._reseal_plugins(account_id)
        if spec is not None:
            self.dispatcher.send(
                target.name, TaskName.START_ACCOUNT, StartAccount(spec=spec, wait_for_lease=self.lease_wait)
            )
            return ActionResult(
                account_id, f"account {account_id} moved from {old} to {target.name} and is starting there", True
            )
        return ActionResult(account_id, f"account {account_id} moved from {old} to {target.name}", False)

    def _reseal_plugins(self, account_id: int) -> None:
        """The account's secret plugin configuration sealed for its new worker before it starts there (else the
        backend's next scan does it: `backend.plugin_secrets`)."""
        from backend.plugin_secrets import PluginMirror

        try:
            with self.sessions() as session:
                PluginMirror(self.redis, self._secret_box).reseal(session, [account_id])
        except RedisError as error:
            log.warning("account %d: plugin secrets not sealed for its new worker yet (%s)", account_id, error)

    @audited("account.remove", _ACCOUNT)
    def remove(self, account_id: int, actor: str) -> ActionResult:
        """Stop the account (if its worker is online), then delete it and wipe its secrets."""
        with self.sessions() as session:
            account = accounts_db.get_account(session, account_id)
            name = self._worker_name(session, account) if account.worker_id is not None else None
        if name is not None and self._worker_online(name):
            try:
                self.dispatcher.call(name, TaskName.STOP_ACCOUNT, AccountRef(account_id=account_id), STOP_TIMEOUT)
            except WorkerDidNotAnswer as error:
                raise AccountError(
                    f"{error}: not removed, because it may still be running", "no_answer_not_removed", **error.values
                ) from None
        with self.sessions.begin() as session:
            accounts_db.delete_account(session, accounts_db.get_account(session, account_id), actor)
        self._forget_on_worker(name, account_id)
        stale = [keys.account_assignment(account_id), keys.account_plugins(account_id)]
        if name is not None:
            stale += [keys.account_state(name, account_id), keys.plugin_status(name, account_id)]
        self.redis.delete(*stale)
        self.redis.srem(keys.ASSIGNMENTS_MOVING, account_id)
        return ActionResult(account_id, f"account {account_id} removed and its secrets wiped", name is not None)

    @audited(
        lambda a: "accounts.start_all" if a["desired"] == DesiredState.RUNNING else "accounts.stop_all",
        plus_results(named(("worker", "worker")), "account", "account_id"),
        params=("when_back",),
    )
    def bulk(self, worker: str, desired: DesiredState, actor: str, when_back: bool = False) -> list[ActionResult]:
        """Start or stop every account of a worker; starts go in batches (one message per MAX_BATCH accounts)."""
        if desired is DesiredState.STOPPED:
            with self.sessions() as session:
                ids = [
                    a.id
                    for a in accounts_db.list_accounts(session, worker_id=workers_db.get_worker(session, worker).id)
                ]
            results = []
            for account_id in ids:
                try:
                    results.append(self.stop(account_id, actor))
                except AccountError as error:
                    results.append(ActionResult(account_id, str(error), False))
            return results
        results: list[ActionResult] = []
        specs: list[AccountSpec] = []
        with self.sessions.begin() as session:
            target = workers_db.get_worker(session, worker)
            try:
                self._usable_worker(session, worker)
                usable = True
            except WorkerUnavailable:
                if not when_back:
                    raise
                usable = False
            for account in accounts_db.list_accounts(session, worker_id=target.id):
                if account.session_enc is None:
                    results.append(
                        ActionResult(account.id, f"account {account.id} has no session: log in first", False)
                    )
                    continue
                accounts_db.set_desired_state(session, account, DesiredState.RUNNING, actor)
                if usable:
                    specs.append(account_spec(account))
                else:
                    results.append(
                        ActionResult(account.id, f"account {account.id} will start when {worker!r} is back", False)
                    )
        for start in range(0, len(specs), MAX_BATCH):
            batch = specs[start : start + MAX_BATCH]
            try:
                answer = self.dispatcher.call(worker, TaskName.START_ACCOUNTS, StartAccounts(specs=batch), BULK_TIMEOUT)
            except WorkerDidNotAnswer as error:
                results += [ActionResult(s.account_id, f"{error}; the backend will retry", False) for s in batch]
                continue
            for item in answer.get("results", []):
                account_id = int(item["account_id"])
                verb = "starting" if item.get("ok") else "not started"
                results.append(
                    ActionResult(
                        account_id, f"account {account_id}: {verb} ({item.get('detail', '')})", bool(item.get("ok"))
                    )
                )
        return sorted(results, key=lambda result: result.account_id)
