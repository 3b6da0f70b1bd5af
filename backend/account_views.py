"""What the accounts service shows: an account (`AccountView`), a page of them, its live state — each status
judged from live sources (the worker's report and the account's status in Redis, `backend.observed`), never
taken from the record. Secrets are never part of a view (a proxy shows masked)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.account_base import AccountServiceBase
from backend.fleet import EventView, iso_utc
from backend.observed import Recorded, WorkerSight, observe, sight
from celery_app import leases, presence, report
from celery_app.account_state import AccountState, read_states
from celery_app.contract import DeviceIdentity
from common.details import Detail, english, stored
from common.redaction import safe_detail
from common.validation import parse_proxy
from database import accounts as accounts_db
from database import events as events_db
from database import workers as workers_db
from database.models import Account, Worker, epoch_to_datetime


@dataclass(frozen=True)
class AccountView:
    id: int
    phone_masked: str
    api_id: int
    worker: str | None
    desired_state: str
    status: str
    detail: str
    flood_wait_until: datetime | None
    user_id: int | None
    username: str | None
    name: str | None
    has_session: bool
    proxy: str | None
    created_at: datetime
    status_changed_at: datetime | None
    live: bool = False  # a live source (the worker's report or status) says so now
    coded: Detail | None = None  # `detail` as a code with parameters: what the bots render
    device: DeviceIdentity | None = None  # what the account presents to Telegram (`describe()` for one line)
    events: list[EventView] = field(default_factory=list)
    check_verdict: str | None = None  # the last `check` (`celery_app.operations.Verdict`), None if never checked
    checked_at: datetime | None = None
    check_summary: str = ""
    check_result: dict[str, Any] = field(default_factory=dict)  # the last check's result (what the bots render)
    has_password: bool = False  # a 2FA password is on file (encrypted; never shown)

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "id": self.id,
            "phone": self.phone_masked,
            "api_id": self.api_id,
            "worker": self.worker,
            "desired_state": self.desired_state,
            "status": self.status,
            "live": self.live,
            "detail": self.detail,
            "flood_wait_until": iso_utc(self.flood_wait_until),
            "user_id": self.user_id,
            "username": self.username,
            "name": self.name,
            "has_session": self.has_session,
            "has_password": self.has_password,
            "proxy": self.proxy,
            "created_at": iso_utc(self.created_at),
            "status_changed_at": iso_utc(self.status_changed_at),
            "device": self.device.model_dump() if self.device is not None else None,
            "check": {
                "verdict": self.check_verdict,
                "at": iso_utc(self.checked_at),
                "summary": self.check_summary,
            }
            if self.check_verdict
            else None,
        }
        if self.events:
            document["events"] = [event.to_json() for event in self.events]
        return document


@dataclass(frozen=True)
class AccountsPage:
    accounts: list[AccountView]
    page: int
    pages: int
    total: int


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class AccountViews(AccountServiceBase):
    def _sights(self, names: list[str]) -> dict[str, WorkerSight]:
        """What can be seen of these workers now: heartbeats and reports (two round trips)."""
        snapshot = presence.read_heartbeats(self.redis, names)
        reports = report.read_reports(self.redis, [name for name in names if name in snapshot.beats])
        return {
            name: sight(name, snapshot.beats.get(name), snapshot.now, self.offline_after, reports.get(name))
            for name in names
        }

    def _views(self, accounts: list[Account], workers: dict[int, Worker]) -> list[AccountView]:
        """Views whose status is judged from live sources (`backend.observed`), never taken from the record."""
        latest = read_states(
            self.redis,
            {a.id: workers[a.worker_id].name for a in accounts if a.worker_id is not None and a.worker_id in workers},
        )
        sights = self._sights(sorted({w.name for w in workers.values()}))
        views = []
        for account in accounts:
            worker = workers.get(account.worker_id) if account.worker_id is not None else None
            recorded = Recorded(
                account.status,
                stored(account.status_code, account.status_detail),
                account.status_changed_at.timestamp() if account.status_changed_at else None,
                account.desired_state,
            )
            seen = observe(account.id, recorded, sights.get(worker.name) if worker else None, latest.get(account.id))
            until = account.flood_wait_until if seen.status == account.status else None
            user_id, username, name = account.tg_user_id, account.tg_username, account.tg_name
            if seen.state is not None:
                until = epoch_to_datetime(seen.state.until) if seen.state.until else None
                if seen.state.user_id is not None:
                    user_id, username, name = seen.state.user_id, seen.state.username, seen.state.name
            views.append(
                AccountView(
                    id=account.id,
                    phone_masked=account.phone_masked,
                    api_id=account.api_id,
                    worker=worker.name if worker else None,
                    desired_state=account.desired_state,
                    status=seen.status,
                    detail=safe_detail(english(seen.detail)),
                    flood_wait_until=until,
                    user_id=user_id,
                    username=username,
                    name=name,
                    has_session=account.session_enc is not None,
                    proxy=self._masked_proxy(account.proxy_enc),
                    created_at=account.created_at,
                    status_changed_at=account.status_changed_at,
                    live=seen.live,
                    coded=seen.detail,
                    device=accounts_db.device_of(account),
                    check_verdict=account.check_verdict,
                    checked_at=account.checked_at,
                    check_summary=account.check_summary or "",
                    check_result=_json_object(account.check_result),
                    has_password=account.password_enc is not None,
                )
            )
        return views

    def _masked_proxy(self, proxy_enc: str | None) -> str | None:
        if proxy_enc is None:
            return None
        try:
            return parse_proxy(self.box.decrypt(proxy_enc)).masked()
        except Exception:  # noqa: BLE001 - a view must not fail because a key is missing
            return "set"

    def list_accounts(
        self, worker: str | None = None, status: str | None = None, offset: int = 0, limit: int | None = None
    ) -> list[AccountView]:
        with self.sessions() as session:
            worker_id = workers_db.get_worker(session, worker).id if worker else None
            workers = {w.id: w for w in workers_db.list_workers(session)}
            accounts = list(
                accounts_db.list_accounts(
                    session, worker_id=worker_id, offset=offset, limit=limit if status is None else None
                )
            )
        views = self._views(accounts, workers)
        if status is not None:
            views = [v for v in views if v.status == status]
            views = views[:limit] if limit is not None else views
        return views

    def accounts_page(self, page: int, per_page: int = 10, worker_id: int | None = None) -> AccountsPage:
        with self.sessions() as session:
            total = accounts_db.count_accounts(session, worker_id=worker_id)
            pages = max(1, -(-total // per_page))
            page = min(max(0, page), pages - 1)
            accounts = list(
                accounts_db.list_accounts(session, worker_id=worker_id, offset=page * per_page, limit=per_page)
            )
            ids = {a.worker_id for a in accounts if a.worker_id is not None}
            workers = {w.id: w for w in workers_db.workers_by_ids(session, list(ids))}
        return AccountsPage(self._views(accounts, workers), page, pages, total)

    def get_account(self, account_id: int, event_limit: int = 10) -> AccountView:
        with self.sessions() as session:
            account = accounts_db.get_account(session, account_id)
            workers = {w.id: w for w in workers_db.list_workers(session)}
            subject = events_db.account_subject(account_id)
            events = [EventView.of(e) for e in events_db.recent_events(session, subject, event_limit)]
        view = self._views([account], workers)[0]
        return AccountView(**{**view.__dict__, "events": events})

    def live_state(self, account_id: int) -> AccountState | None:
        """What the worker the account is given to says of it now (the control plane's assignment, else the
        worker the record names)."""
        worker = leases.assigned_workers(self.redis, [account_id]).get(account_id)
        if worker is None:
            with self.sessions() as session:
                worker = accounts_db.accounts_workers(session, [account_id]).get(account_id)
        return read_states(self.redis, {account_id: worker}).get(account_id) if worker else None

    def wait_for_status(
        self, account_id: int, done: Callable[[AccountState], bool], timeout: float
    ) -> AccountState | None:
        """Poll the live status until `done(state)` or timeout; returns the last state seen."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.live_state(account_id)
            if state is not None and done(state):
                return state
            time.sleep(0.05)
        return state
