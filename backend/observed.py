"""What is actually true about an account, judged from live sources only.

The backend's scan and every view (CLI, bot) ask the same question the same way: given what the database
recorded, what the account's worker reported with its last heartbeat (`celery_app.report`) and the account's
latest status hash, what is the account doing now? The answer is a fact only when a live source says it:

- a worker whose heartbeat is older than its fence time (`presence.fence_after`) may have stopped its
  clients already, so while it is silent nothing it reported is believed (`unknown`), and once it is
  offline its accounts are `lost`;
- an account its believable worker does not list is not running there, whatever the database says;
- a status hash newer than the report (written after the last heartbeat) is the newest word.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery_app import presence
from celery_app.account_state import RUNNER_STATUSES, UNKNOWN, AccountState, AccountStatus
from celery_app.presence import Liveness, liveness
from celery_app.report import WorkerReport
from common.details import Detail, detail, stored

_RUNNER_VALUES = frozenset(status.value for status in RUNNER_STATUSES)


@dataclass(frozen=True, slots=True)
class WorkerSight:
    """What the control plane sees of one worker now."""

    name: str
    online: bool  # heartbeat within WORKER_OFFLINE_AFTER
    believable: bool  # heartbeat within the fence time and a report present: what it lists is true now
    silent_for: float | None  # seconds since its last heartbeat
    report: WorkerReport | None


def sight(name: str, beat: float | None, now: float, offline_after: float, report: WorkerReport | None) -> WorkerSight:
    online = liveness(beat, now, offline_after) is Liveness.ONLINE
    silent = None if beat is None else max(0.0, now - beat)
    believable = online and report is not None and silent is not None and silent <= presence.fence_after(offline_after)
    return WorkerSight(name, online, believable, silent, report if online else None)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The database's view of an account."""

    status: str
    detail: Detail | None
    changed_at: float | None  # Redis time of the change
    desired: str


@dataclass(frozen=True, slots=True)
class Observation:
    """The account's status as far as anyone can tell now; `at` is the Redis time of that knowledge."""

    status: str
    detail: Detail | None
    at: float | None
    live: bool  # a live source (a believable worker's report or status) says so
    state: AccountState | None = None  # the status hash it came from, when it did


def said_by(state: AccountState) -> Detail | None:
    """What a worker's status hash says, coded (a worker older than codes: its English words as they are)."""
    return stored(state.code, state.detail)


def observe(
    account_id: int, recorded: Recorded, worker: WorkerSight | None, latest: AccountState | None
) -> Observation:
    """Judge one account (assigned to `worker`) from the record, the worker's report and its status hash."""
    if worker is None:
        if recorded.status in _RUNNER_VALUES:
            return Observation(AccountStatus.STOPPED.value, detail("unassigned"), None, False)
        return Observation(recorded.status, recorded.detail, recorded.changed_at, False)
    if not worker.online:
        if recorded.status in _RUNNER_VALUES:
            why = (
                detail("worker_offline_silent", worker=worker.name, seconds=worker.silent_for)
                if worker.silent_for is not None
                else detail("worker_offline", worker=worker.name)
            )
            return Observation(AccountStatus.LOST.value, why, None, False)
        return Observation(recorded.status, recorded.detail, recorded.changed_at, False)
    report = worker.report
    if not worker.believable or report is None:
        if recorded.status in _RUNNER_VALUES:
            why = (
                detail("worker_silent", worker=worker.name, seconds=worker.silent_for)
                if worker.silent_for is not None and report is not None
                else detail("no_report", worker=worker.name)
            )
            return Observation(UNKNOWN, why, None, False)
        return Observation(recorded.status, recorded.detail, recorded.changed_at, False)
    own = latest if latest is not None and latest.worker == worker.name else None
    if own is not None and own.rt > report.at:  # written after the last heartbeat: the newest word
        return Observation(own.status.value, said_by(own), own.rt, True, own)
    if latest is None and recorded.changed_at is not None and recorded.changed_at > report.at:
        # Without the status hash at hand (the scan), a record newer than the report is the newest word.
        return Observation(recorded.status, recorded.detail, recorded.changed_at, False)
    listed = report.statuses.get(account_id)
    if listed is not None:
        same = own is not None and own.status.value == listed
        return Observation(listed, said_by(own) if same and own else None, report.at, True, own if same else None)
    if recorded.status in _RUNNER_VALUES:
        status = AccountStatus.LOST if recorded.desired == "running" else AccountStatus.STOPPED
        return Observation(status.value, detail("not_running_on", worker=worker.name), report.at, True)
    return Observation(recorded.status, recorded.detail, report.at, True)
