"""The backend's account reconciliation: actual state into the database, desired state onto the workers.

- Account statuses reported by workers (stream events) are recorded at once.
- Accounts live on a worker that goes offline become `lost`.
- Accounts whose desired state is `running`, assigned to an online and active worker, and not running
  there (`stopped` or `lost`) are started; a worker that restarts gets its accounts back unasked.
  A start is not repeated for an account within `cooldown` seconds.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from backend.accounts_service import account_spec
from backend.dispatch import Dispatcher
from celery_app.account_state import RESTARTABLE, AccountState
from celery_app.contract import MAX_BATCH, AccountSpec, StartAccounts, TaskName
from celery_app.events import WireEvent
from database import operations as ops
from database.models import Worker

log = logging.getLogger(__name__)


class AccountSync:
    def __init__(self, dispatcher: Dispatcher, lease_wait: float, cooldown: float = 15.0) -> None:
        self.dispatcher = dispatcher
        self.lease_wait = lease_wait
        self.cooldown = cooldown
        self._last_start: dict[int, float] = {}

    def apply_states(self, session: Session, events: list[WireEvent]) -> None:
        reported = []
        for event in events:
            state = AccountState.from_fields({k: str(v) for k, v in event.data.items()})
            if state is None:
                continue
            reported.append(
                ops.ReportedState(
                    account_id=state.account_id,
                    status=state.status.value,
                    detail=state.detail,
                    until=ops.epoch_to_datetime(state.until) if state.until else None,
                    user_id=state.user_id,
                    username=state.username,
                    name=state.name,
                    at=ops.epoch_to_datetime(event.at) if event.at else ops.epoch_to_datetime(time.time()),
                )
            )
        ops.apply_account_states(session, reported)

    def workers_went_offline(
        self, session: Session, worker_ids: list[int], reason: str = "its worker went offline"
    ) -> None:
        lost = ops.mark_accounts_lost(session, worker_ids, reason)
        if lost:
            log.info("%d account(s) lost with their worker(s)", len(lost))

    def resume(self, session: Session, workers: list[Worker] | dict[int, str]) -> int:
        """Start what should run on these online, active workers (id -> name); returns how many were sent."""
        names = workers if isinstance(workers, dict) else {w.id: w.name for w in workers}
        now = time.monotonic()
        by_worker: dict[str, list[AccountSpec]] = {}
        for account in ops.accounts_wanting_start(session, list(names), [s.value for s in RESTARTABLE]):
            if now - self._last_start.get(account.id, -1e9) < self.cooldown or account.worker_id is None:
                continue
            self._last_start[account.id] = now
            by_worker.setdefault(names[account.worker_id], []).append(account_spec(account))
        for worker, specs in by_worker.items():
            for start in range(0, len(specs), MAX_BATCH):
                batch = StartAccounts(specs=specs[start : start + MAX_BATCH], wait_for_lease=self.lease_wait)
                self.dispatcher.send(worker, TaskName.START_ACCOUNTS, batch)
        sent = sum(len(specs) for specs in by_worker.values())
        if sent:
            log.info("resuming %d account(s) that should be running", sent)
        return sent
