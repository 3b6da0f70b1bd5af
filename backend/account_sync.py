"""The backend's account reconciliation: the database in line with what workers run, and workers with the
desired state — for the whole fleet, every scan (level-triggered; events only make it sooner).

Each scan judges every account (`backend.observed`) from the record, its worker's heartbeat report and
presence, then:
- corrects the record where live state contradicts it (an account its worker does not list is not
  `running`, whatever was recorded; one on an offline worker is `lost`);
- starts what should run and runs nowhere, on its online and active worker: at most `batch` per worker per
  scan, never the same account again within `cooldown` seconds, doubling (up to `max_cooldown`) while its
  starts keep failing, each wait shortened by a random quarter at most (jitter: accounts that failed together
  are not all retried together; the worker paces their connects too);
- stops what runs where it should not (desired stopped, moved, removed).
Worker status events are recorded at once as they arrive (`apply_states`), older than the record skipped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy.orm import Session

from backend.account_base import account_spec
from backend.dispatch import TaskDispatcher
from backend.observed import Observation, Recorded, WorkerSight, observe, said_by
from celery_app.account_state import NEEDS_ADMIN, RUNNER_STATUSES, UNKNOWN, AccountState, read_states
from celery_app.contract import MAX_BATCH, AccountRef, Payload, StartAccounts, TaskName
from celery_app.events import WireEvent
from database.account_status import (
    ReportedState,
    StatusCorrection,
    account_records,
    apply_account_states,
    correct_account_statuses,
    naive_utc_to_epoch,
)
from database.accounts import accounts_workers, spec_rows
from database.audit import record_audit
from database.models import epoch_to_datetime

log = logging.getLogger(__name__)
Message = tuple[str, TaskName, Payload]

_NOT_STARTABLE = frozenset({*(s.value for s in NEEDS_ADMIN), *(s.value for s in RUNNER_STATUSES), UNKNOWN})


@dataclass
class SyncReport:
    accounts: int = 0
    corrected: int = 0
    started: int = 0
    stopped: int = 0
    messages: list[Message] = field(default_factory=list)  # to send once the scan's transaction is committed


class AccountSync:
    def __init__(
        self,
        dispatcher: TaskDispatcher,
        lease_wait: float,
        cooldown: float = 15.0,
        max_cooldown: float = 600.0,
        batch: int = MAX_BATCH,
    ) -> None:
        self.dispatcher = dispatcher
        self.lease_wait = lease_wait
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.batch = batch
        self._last_start: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self._jitter: dict[int, float] = {}  # account -> the factor (0.75-1) of its current wait
        self._last_stop: dict[tuple[int, str], float] = {}

    # --- the fast path: statuses as workers report them

    def apply_states(self, session: Session, redis: Redis, events: list[WireEvent]) -> None:
        """Record what workers say of their accounts. An event is only a sign that a worker wrote a status: what
        is recorded is read where that worker keeps it (its own keys, which no other worker can write), and only
        for an account the fleet gives to that worker; a claim about anyone else's account is refused."""
        claimed = {}
        for event in events:
            state = AccountState.from_fields({k: str(v) for k, v in event.data.items()})
            if state is not None and state.worker:
                claimed[state.account_id] = state.worker
        given = accounts_workers(session, list(claimed))
        mine = {account_id: worker for account_id, worker in claimed.items() if given.get(account_id) == worker}
        if len(mine) < len(claimed):
            refused = sorted(set(claimed) - set(mine))
            log.warning("refused status claims for %d account(s) not given to the claiming worker", len(refused))
        reported = []
        for state in read_states(redis, mine).values():
            if state.worker != mine.get(state.account_id):
                continue
            at = state.rt or time.time()
            reported.append(
                ReportedState(
                    account_id=state.account_id,
                    status=state.status.value,
                    detail=said_by(state),
                    until=epoch_to_datetime(state.until) if state.until else None,
                    user_id=state.user_id,
                    username=state.username,
                    name=state.name,
                    at=epoch_to_datetime(at),
                )
            )
        apply_account_states(session, reported)

    # --- the scan

    def reconcile(
        self,
        session: Session,
        redis: Redis,
        worker_names: dict[int, str],
        active_workers: set[int],
        sights: dict[str, WorkerSight],
        now: float,
    ) -> SyncReport:
        """Compare every account with what the workers report now; correct, start and stop (see module)."""
        records = account_records(session)
        known = {record[0] for record in records}
        listed: dict[int, tuple[str, str]] = {}  # account -> (worker, status) where a believable worker runs it
        also: dict[int, list[str]] = {}  # accounts listed by more than one worker: every place
        for name, seen in sights.items():
            if seen.believable and seen.report is not None:
                for account_id, status in seen.report.statuses.items():
                    if account_id in listed:
                        also.setdefault(account_id, [listed[account_id][0]]).append(name)
                    else:
                        listed[account_id] = (name, status)
        clock = time.monotonic()
        corrections: list[tuple[int, Observation, str | None]] = []
        starts: dict[str, list[int]] = {}
        stops: dict[str, list[int]] = {}
        attempts = self._attempts
        for account_id, worker_id, desired, status, changed, has_session in records:
            worker = worker_names.get(worker_id) if worker_id is not None else None
            where = listed.get(account_id)
            if where is not None and where[0] == worker and where[1] == status and desired == "running":
                if account_id not in also:  # runs where it should, as recorded: the common case
                    if attempts:
                        attempts.pop(account_id, None)
                    continue
            changed_at = naive_utc_to_epoch(changed)
            seen = sights.get(worker) if worker is not None else None
            observation = observe(account_id, Recorded(status, None, changed_at, desired), seen, None)
            places = also.get(account_id) or ([where[0]] if where is not None else [])
            for place in places:
                report = sights[place].report
                newer = report is not None and (changed_at is None or report.at > changed_at)
                if (place != worker or desired != "running") and newer:
                    self._stop_due(stops, place, account_id, clock)
            if worker is not None and worker in places:
                attempts.pop(account_id, None)
            if (
                observation.status != status
                and observation.status != UNKNOWN
                and (observation.at is None or changed_at is None or observation.at > changed_at)
            ):
                corrections.append((account_id, observation, worker))
            if (
                desired == "running"
                and has_session
                and seen is not None
                and seen.believable
                and worker_id in active_workers
                and not places
                and observation.status not in _NOT_STARTABLE
                and self._start_due(account_id, clock)
                and len(starts.get(seen.name, ())) < self.batch
            ):
                starts.setdefault(seen.name, []).append(account_id)
        for account_id in listed.keys() - known:  # removed from the fleet, still running somewhere
            for place in also.get(account_id) or [listed[account_id][0]]:
                self._stop_due(stops, place, account_id, clock)
        self._correct(session, redis, corrections, now)
        messages = self._starts(session, starts, clock) + self._stops(stops)
        self._audit(session, messages)
        self._forget_gone(known)
        started = sum(len(m[2].specs) for m in messages if isinstance(m[2], StartAccounts))
        stopped = sum(1 for m in messages if isinstance(m[2], AccountRef))
        if corrections or started or stopped:
            log.info(
                "accounts: %d recorded status(es) corrected, %d start(s) and %d stop(s) sent",
                len(corrections),
                started,
                stopped,
            )
        return SyncReport(len(records), len(corrections), started, stopped, messages)

    def send(self, report: SyncReport) -> None:
        """Send what a scan decided (after its transaction is committed: no lock is held meanwhile)."""
        self.dispatcher.send_many(report.messages)
        report.messages = []

    def _start_due(self, account_id: int, clock: float) -> bool:
        last = self._last_start.get(account_id)
        attempts = self._attempts.get(account_id, 0)
        wait = min(self.max_cooldown, self.cooldown * 2 ** max(0, attempts - 1)) * self._jitter.get(account_id, 1.0)
        return last is None or clock - last >= wait

    def _stop_due(self, stops: dict[str, list[int]], worker: str, account_id: int, clock: float) -> None:
        last = self._last_stop.get((account_id, worker))
        if last is None or clock - last >= self.cooldown:
            self._last_stop[(account_id, worker)] = clock
            stops.setdefault(worker, []).append(account_id)

    def _correct(
        self, session: Session, redis: Redis, corrections: list[tuple[int, Observation, str | None]], now: float
    ) -> None:
        if not corrections:
            return
        listed = {
            account_id: worker
            for account_id, seen, worker in corrections
            if seen.live and seen.status != "lost" and worker is not None
        }
        latest = read_states(redis, listed)  # details of what the workers list (the report carries no detail)
        rows = []
        for account_id, seen, _worker in corrections:
            state = latest.get(account_id)
            same = state is not None and state.status.value == seen.status
            detail = said_by(state) if same and state is not None else seen.detail
            until = epoch_to_datetime(state.until) if same and state is not None and state.until else None
            at = epoch_to_datetime(seen.at if seen.at is not None else now)
            rows.append(StatusCorrection(account_id, seen.status, detail, at, until))
        correct_account_statuses(session, rows)

    def _starts(self, session: Session, starts: dict[str, list[int]], clock: float) -> list[Message]:
        """One StartAccounts message per worker; the accounts' specs read in a few statements."""
        accounts = spec_rows(session, [account_id for ids in starts.values() for account_id in ids])
        messages: list[Message] = []
        for worker, ids in starts.items():
            specs = [account_spec(accounts[i]) for i in ids if i in accounts and accounts[i].session_enc is not None]
            if not specs:
                continue
            messages.append(
                (worker, TaskName.START_ACCOUNTS, StartAccounts(specs=specs, wait_for_lease=self.lease_wait))
            )
            for spec in specs:
                self._last_start[spec.account_id] = clock
                self._attempts[spec.account_id] = self._attempts.get(spec.account_id, 0) + 1
                self._jitter[spec.account_id] = random.uniform(0.75, 1.0)
        return messages

    @staticmethod
    def _audit(session: Session, messages: list[Message]) -> None:
        """The backend's own starts and stops, one audit row per worker and kind, in the scan's transaction."""
        started: dict[str, list[int]] = {}
        stopped: dict[str, list[int]] = {}
        for worker, _task, payload in messages:
            if isinstance(payload, StartAccounts):
                started.setdefault(worker, []).extend(spec.account_id for spec in payload.specs)
            elif isinstance(payload, AccountRef):
                stopped.setdefault(worker, []).append(payload.account_id)
        for action, by_worker in (("reconcile.start", started), ("reconcile.stop", stopped)):
            for worker, ids in by_worker.items():
                targets = [f"worker:{worker}", *(f"account:{i}" for i in ids)]
                record_audit(session, "backend", action, targets, {"accounts": len(ids)})

    def _stops(self, stops: dict[str, list[int]]) -> list[Message]:
        for worker, ids in stops.items():
            log.info("stopping %d account(s) that run on %s but should not", len(ids), worker)
        return [
            (worker, TaskName.STOP_ACCOUNT, AccountRef(account_id=account_id))
            for worker, ids in stops.items()
            for account_id in ids
        ]

    def _forget_gone(self, known: set[int]) -> None:
        for table in (self._last_start, self._attempts, self._jitter):
            for account_id in [a for a in table if a not in known]:
                del table[account_id]
        horizon = time.monotonic() - self.max_cooldown
        for key in [k for k, at in self._last_stop.items() if at < horizon]:
            del self._last_stop[key]
