"""The accounts service: add (log in or import), start, stop, restart, move, remove, bulk actions.

Plain methods over the database, Redis and the task dispatcher, used by the CLI and the bot. Every command
checks the target worker is online and active before dispatching; when it is not, the caller gets a clear
refusal, or (`when_back=True`) the desired state is recorded and the backend starts the account when the
worker is back. Secrets are encrypted before they leave this module and are never returned in views.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from backend.dispatch import TaskDispatcher, WorkerDidNotAnswer, WorkerRejectedCall
from backend.fleet import EventView, iso_utc
from backend.observed import Recorded, WorkerSight, observe, sight
from celery_app import keys, presence, report
from celery_app.account_state import AccountState, AccountStatus, read_states
from celery_app.contract import (
    MAX_BATCH,
    AccountRef,
    AccountSpec,
    CheckSession,
    DeviceIdentity,
    LoginRef,
    SendLoginCode,
    StartAccount,
    StartAccounts,
    SubmitLoginCode,
    SubmitLoginPassword,
    TaskName,
)
from celery_app.presence import Liveness, liveness
from common.crypto import SecretBox
from common.details import Detail, detail, english, stored
from common.devices import choose_identity, complete_identity
from common.errors import CODES, FleetError
from common.redaction import safe_detail
from common.sessions import parse_string_session, session_file_to_string
from common.validation import (
    InvalidValue,
    mask_phone,
    normalize_phone,
    parse_proxy,
    validate_api_hash,
    validate_api_id,
)
from database import operations as ops
from database.models import Account, DesiredState, FleetEventKind, Worker

LOGIN_TTL_SECONDS = 300
STOP_TIMEOUT = 30.0
BULK_TIMEOUT = 120.0
START_ANSWER_TIMEOUT = 15.0
LOGIN_CALL_TIMEOUT = 60.0


class AccountError(FleetError):
    """A refused or failed account action: the message in English, `code` and `values` for the bots."""


class WorkerUnavailable(AccountError):
    """The worker is offline (`code` worker_offline) or deactivated (worker_deactivated)."""


class LoginError(AccountError):
    def __init__(self, message: str, code: str = "error", retry: bool = False, **values: object) -> None:
        super().__init__(message, code, **values)
        self.retry = retry


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


@dataclass(frozen=True)
class ActionResult:
    account_id: int
    message: str
    dispatched: bool
    run: str = ""  # the runner the worker started or found: its states carry the same `run`


@dataclass(frozen=True)
class LoginStep:
    """Where a login stands: `code_sent`, `password_needed` or `authorized` (then `account` is set)."""

    login_id: str
    state: str
    message: str
    account: AccountView | None = None


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _login_code(answer: dict[str, Any]) -> str:
    """The worker's code for a failed login step; one this control plane does not know reads as "error"."""
    code = str(answer.get("error") or "error")
    return code if code in CODES else "error"


def account_spec(account: Account) -> AccountSpec:
    """What a worker needs to run the account; the secrets go as stored (already encrypted)."""
    if account.session_enc is None:
        raise AccountError(f"account {account.id} has no session: log in first", "no_session", id=account.id)
    return AccountSpec(
        account_id=account.id,
        phone_enc=account.phone_enc,
        api_id=account.api_id,
        api_hash_enc=account.api_hash_enc,
        session_enc=account.session_enc,
        proxy_enc=account.proxy_enc,
        device=ops.device_of(account),
    )


def _login_key(login_id: str) -> str:
    return f"{keys.PREFIX}:login:{login_id}"


def read_live_states(redis: Redis, account_ids: list[int]) -> dict[int, AccountState]:
    """The status hashes workers wrote for these accounts, in one round trip."""
    return read_states(redis, account_ids)


class AccountService:
    def __init__(
        self,
        redis: Redis,
        sessions: sessionmaker[Session],
        dispatcher: TaskDispatcher,
        offline_after: float,
        secret_box: Callable[[], SecretBox],
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.offline_after = offline_after
        self._secret_box = secret_box
        self._canary_written = False
        self.lease_wait = offline_after + 5

    @property
    def box(self) -> SecretBox:
        box = self._secret_box()
        if not self._canary_written:
            # Lets a worker host check its SECRET_KEY (`run_worker.py --check`) against this one's.
            with contextlib.suppress(RedisError):
                self.redis.set(keys.SECRET_CANARY, box.encrypt("fleet"), nx=True)
            self._canary_written = True
        return box

    # --- views ------------------------------------------------------------------------------------------

    def _worker_online(self, name: str) -> bool:
        snapshot = presence.read_heartbeats(self.redis, [name])
        return liveness(snapshot.beats.get(name), snapshot.now, self.offline_after) is Liveness.ONLINE

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
        latest = read_states(self.redis, [a.id for a in accounts])
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
                until = ops.epoch_to_datetime(seen.state.until) if seen.state.until else None
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
                    device=ops.device_of(account),
                    check_verdict=account.check_verdict,
                    checked_at=account.checked_at,
                    check_summary=account.check_summary or "",
                    check_result=_json_object(account.check_result),
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
            worker_id = ops.get_worker(session, worker).id if worker else None
            workers = {w.id: w for w in ops.list_workers(session)}
            accounts = list(
                ops.list_accounts(session, worker_id=worker_id, offset=offset, limit=limit if status is None else None)
            )
        views = self._views(accounts, workers)
        if status is not None:
            views = [v for v in views if v.status == status]
            views = views[:limit] if limit is not None else views
        return views

    def accounts_page(self, page: int, per_page: int = 10, worker_id: int | None = None) -> AccountsPage:
        with self.sessions() as session:
            total = ops.count_accounts(session, worker_id=worker_id)
            pages = max(1, -(-total // per_page))
            page = min(max(0, page), pages - 1)
            accounts = list(ops.list_accounts(session, worker_id=worker_id, offset=page * per_page, limit=per_page))
            ids = {a.worker_id for a in accounts if a.worker_id is not None}
            workers = {w.id: w for w in ops.workers_by_ids(session, list(ids))}
        return AccountsPage(self._views(accounts, workers), page, pages, total)

    def get_account(self, account_id: int, event_limit: int = 10) -> AccountView:
        with self.sessions() as session:
            account = ops.get_account(session, account_id)
            workers = {w.id: w for w in ops.list_workers(session)}
            events = [EventView.of(e) for e in ops.recent_events(session, ops.account_subject(account_id), event_limit)]
        view = self._views([account], workers)[0]
        return AccountView(**{**view.__dict__, "events": events})

    def live_state(self, account_id: int) -> AccountState | None:
        return read_live_states(self.redis, [account_id]).get(account_id)

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

    # --- helpers ----------------------------------------------------------------------------------------

    def _usable_worker(self, session: Session, name: str) -> Worker:
        worker = ops.get_worker(session, name)
        if not worker.is_active:
            raise WorkerUnavailable(
                f"worker {name!r} is deactivated; activate it first or choose another worker",
                "worker_deactivated",
                worker=name,
            )
        if not self._worker_online(name):
            raise WorkerUnavailable(
                f"worker {name!r} is offline; start it or choose another worker", "worker_offline", worker=name
            )
        return worker

    def _validated_proxy(self, proxy: str | None) -> str | None:
        if proxy is None or not proxy.strip():
            return None
        try:
            return self.box.encrypt(parse_proxy(proxy).url())
        except InvalidValue as error:
            raise AccountError(str(error), "proxy", problem=str(error)) from None

    @staticmethod
    def _credentials(phone: str | None, api_id: object, api_hash: str) -> tuple[str | None, int, str]:
        try:
            return (normalize_phone(phone) if phone else None, validate_api_id(api_id), validate_api_hash(api_hash))
        except InvalidValue as error:
            raise AccountError(str(error), error.code, problem=str(error)) from None

    # --- import -----------------------------------------------------------------------------------------

    def import_session(
        self,
        worker: str,
        api_id: object,
        api_hash: str,
        *,
        session_string: str | None = None,
        session_file: bytes | None = None,
        phone: str | None = None,
        proxy: str | None = None,
        device: DeviceIdentity | Mapping[str, str] | None = None,
        actor: str,
    ) -> AccountView:
        """Store an existing session on a worker (nothing is sent to Telegram). The phone is required.

        `device` is the identity the session was used with (from its export's sidecar: `common.devices`),
        whole or in part; what it does not give is taken from the identity chosen for the account.
        """
        try:
            if session_file is not None:
                string = session_file_to_string(session_file)
            elif session_string is not None:
                string = session_string.strip()
                parse_string_session(string)
            else:
                raise AccountError("give a session string or a .session file", "session_missing")
        except InvalidValue as error:
            raise AccountError(str(error), "session", detail=str(error)) from None
        normalized_phone, checked_api_id, checked_hash = self._credentials(phone, api_id, api_hash)
        if normalized_phone is None:
            raise AccountError("the phone number of the imported account is required (--phone)", "phone_required")
        proxy_enc = self._validated_proxy(proxy)
        box = self.box
        try:
            identity = complete_identity(device, choose_identity(box.lookup(normalized_phone)))
        except InvalidValue as error:
            raise AccountError(str(error), "device", problem=str(error)) from None
        with self.sessions.begin() as session:
            target = ops.get_worker(session, worker)
            existing = ops.find_account_by_phone(session, box.lookups(normalized_phone))
            if existing is not None:
                exists = ops.AccountExists(mask_phone(normalized_phone), existing.id)
                raise AccountError(str(exists), exists.code, **exists.values)
            account = Account(
                phone_enc=box.encrypt(normalized_phone),
                phone_lookup=box.lookup(normalized_phone),
                phone_masked=mask_phone(normalized_phone),
                api_id=checked_api_id,
                api_hash_enc=box.encrypt(checked_hash),
                session_enc=box.encrypt(string),
                proxy_enc=proxy_enc,
                worker_id=target.id,
                desired_state=DesiredState.STOPPED.value,
                status=AccountStatus.STOPPED.value,
                status_detail=detail("imported").text,
                status_code=detail("imported").encode(),
            )
            ops.set_device(account, identity)
            ops.create_account(
                session, account, FleetEventKind.ACCOUNT_IMPORTED, detail("on_worker", worker=target.name), actor
            )
            account_id = account.id
        return self.get_account(account_id)

    def check_session_on_worker(self, account_id: int, timeout: float = 15.0) -> str:
        """Ask the account's worker whether it can read the stored session (same SECRET_KEY)."""
        with self.sessions() as session:
            account = ops.get_account(session, account_id)
            worker = self._usable_worker(session, self._worker_name(session, account))
            assert account.session_enc is not None
            payload = CheckSession(session_enc=account.session_enc)
        answer = self.dispatcher.call(worker.name, TaskName.CHECK_SESSION, payload, timeout)
        if not answer.get("ok"):
            problem = str(answer.get("message"))
            raise AccountError(
                f"worker {worker.name!r} cannot use this session: {problem}",
                "session_unusable",
                worker=worker.name,
                problem=problem,
            )
        return str(answer.get("message", "ok"))

    @staticmethod
    def _worker_name(session: Session, account: Account) -> str:
        if account.worker_id is None:
            raise AccountError(
                f"account {account.id} is not assigned to a worker; move it to one first", "no_worker", id=account.id
            )
        worker = session.get(Worker, account.worker_id)
        assert worker is not None
        return worker.name

    # --- login ------------------------------------------------------------------------------------------

    def begin_login(
        self, worker: str, phone: str, api_id: object, api_hash: str, *, proxy: str | None = None, actor: str
    ) -> LoginStep:
        normalized_phone, checked_api_id, checked_hash = self._credentials(phone, api_id, api_hash)
        assert normalized_phone is not None
        proxy_enc = self._validated_proxy(proxy)
        box = self.box
        with self.sessions() as session:
            target = self._usable_worker(session, worker)
            existing = ops.find_account_by_phone(session, box.lookups(normalized_phone))
            if (
                existing is not None
                and existing.session_enc is not None
                and existing.status not in (AccountStatus.UNAUTHORIZED, AccountStatus.ERROR, AccountStatus.STOPPED)
            ):
                raise AccountError(
                    f"account {existing.id} with phone {mask_phone(normalized_phone)} exists and is {existing.status}",
                    "account_busy",
                    id=existing.id,
                    status=existing.status,
                )
            # A known account logs in again as the device it has always been; a new one gets its identity now.
            device = ops.device_of(existing) if existing is not None else choose_identity(box.lookup(normalized_phone))
        login_id = uuid.uuid4().hex
        api_hash_enc = box.encrypt(checked_hash)
        phone_enc = box.encrypt(normalized_phone)
        payload = SendLoginCode(
            login_id=login_id,
            phone_enc=phone_enc,
            api_id=checked_api_id,
            api_hash_enc=api_hash_enc,
            proxy_enc=proxy_enc,
            device=device,
        )
        answer = self._login_call(target.name, TaskName.SEND_LOGIN_CODE, payload)
        if answer.get("state") != "code_sent":
            raise LoginError(
                str(answer.get("message") or "could not send the code"),
                _login_code(answer),
                False,
                problem=str(answer.get("message") or ""),
            )
        record = {
            "worker": target.name,
            "phone_enc": phone_enc,
            "api_id": str(checked_api_id),
            "api_hash_enc": api_hash_enc,
            "proxy_enc": proxy_enc or "",
            "device": device.model_dump_json(),
            "actor": actor,
        }
        self.redis.set(_login_key(login_id), json.dumps(record), ex=LOGIN_TTL_SECONDS)
        return LoginStep(
            login_id, "code_sent", "code sent: type it with spaces, like 1 2 3 4 5 (Telegram voids codes sent as is)"
        )

    def _login_record(self, login_id: str) -> dict[str, str]:
        raw = self.redis.get(_login_key(login_id)) if login_id.isalnum() else None
        if not raw:
            raise LoginError("this login has expired or was cancelled; start again", "unknown_login")
        return dict(json.loads(raw))

    def _login_call(self, worker: str, task: TaskName, payload: Any) -> dict[str, Any]:
        try:
            answer = self.dispatcher.call(worker, task, payload, LOGIN_CALL_TIMEOUT)
        except WorkerRejectedCall as error:
            raise LoginError(str(error), error.code, **error.values) from None
        except WorkerDidNotAnswer as error:
            raise LoginError(str(error), "timeout", worker=worker) from None
        if answer.get("error") == "invalid_payload":
            raise LoginError(
                str(answer.get("message")), "invalid_input", retry=True, problem=str(answer.get("message"))
            )
        return answer

    def submit_code(self, login_id: str, code: str) -> LoginStep:
        record = self._login_record(login_id)
        try:
            payload = SubmitLoginCode(login_id=login_id, code=code)
        except ValueError:
            raise LoginError(
                "the login code is 5 or 6 digits; type it with spaces, like 1 2 3 4 5", "invalid_code", True
            ) from None
        return self._login_answer(
            login_id, record, self._login_call(record["worker"], TaskName.SUBMIT_LOGIN_CODE, payload)
        )

    def submit_password(self, login_id: str, password: str) -> LoginStep:
        record = self._login_record(login_id)
        if not password:
            raise LoginError("the password is empty; send it again", "wrong_password", True)
        payload = SubmitLoginPassword(login_id=login_id, password_enc=self.box.encrypt(password))
        return self._login_answer(
            login_id, record, self._login_call(record["worker"], TaskName.SUBMIT_LOGIN_PASSWORD, payload)
        )

    def cancel_login(self, login_id: str) -> None:
        raw = self.redis.getdel(_login_key(login_id)) if login_id.isalnum() else None
        if raw:
            record = json.loads(raw)
            self.dispatcher.send(record["worker"], TaskName.CANCEL_LOGIN, LoginRef(login_id=login_id))

    def _login_answer(self, login_id: str, record: dict[str, str], answer: dict[str, Any]) -> LoginStep:
        state = answer.get("state")
        if state == "password_needed":
            return LoginStep(login_id, "password_needed", str(answer.get("message") or "send the 2FA password"))
        if state != "authorized":
            if not answer.get("retry"):
                self.redis.delete(_login_key(login_id))
            raise LoginError(
                str(answer.get("message") or "login failed"),
                _login_code(answer),
                bool(answer.get("retry")),
                problem=str(answer.get("message") or ""),
            )
        self.redis.delete(_login_key(login_id))
        box = self.box
        phone = box.decrypt(record["phone_enc"])
        with self.sessions.begin() as session:
            worker = ops.get_worker(session, record["worker"])
            account = ops.find_account_by_phone(session, box.lookups(phone))
            if account is None:
                account = Account(
                    phone_enc=record["phone_enc"],
                    phone_lookup=box.lookup(phone),
                    phone_masked=mask_phone(phone),
                    desired_state=DesiredState.STOPPED.value,
                )
                session.add(account)
            account.api_id = int(record["api_id"])
            account.api_hash_enc = record["api_hash_enc"]
            account.session_enc = answer["session_enc"]
            account.proxy_enc = record["proxy_enc"] or None
            account.worker_id = worker.id
            account.status = AccountStatus.STOPPED.value
            account.status_detail, account.status_code = detail("logged_in").text, detail("logged_in").encode()
            account.tg_user_id = answer.get("user_id")
            account.tg_username = answer.get("username")
            account.tg_name = answer.get("name")
            if record.get("device"):  # the identity the session was just created with
                ops.set_device(account, DeviceIdentity.model_validate_json(record["device"]))
            ops.create_account(
                session,
                account,
                FleetEventKind.ACCOUNT_LOGGED_IN,
                detail("on_worker", worker=worker.name),
                record["actor"],
            )
            account_id = account.id
        return LoginStep(login_id, "authorized", "logged in", self.get_account(account_id))

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self, account_id: int, actor: str, when_back: bool = False) -> ActionResult:
        with self.sessions.begin() as session:
            account = ops.get_account(session, account_id)
            if account.session_enc is None:
                raise AccountError(f"account {account_id} has no session: log in first", "no_session", id=account_id)
            name = self._worker_name(session, account)
            try:
                self._usable_worker(session, name)
            except WorkerUnavailable as error:
                if not when_back:
                    raise WorkerUnavailable(
                        f"{error}; or ask to start it when the worker is back",
                        f"{error.code}_start_later",
                        **error.values,
                    ) from None
                ops.set_desired_state(session, account, DesiredState.RUNNING, actor)
                return ActionResult(account_id, f"account {account_id} will start when worker {name!r} is back", False)
            ops.set_desired_state(session, account, DesiredState.RUNNING, actor)
            spec = account_spec(account)
        try:
            answer = self.dispatcher.call(name, TaskName.START_ACCOUNT, StartAccount(spec=spec), START_ANSWER_TIMEOUT)
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
                f"worker {name!r} did not start account {account_id}: {problem}",
                "start_refused",
                worker=name,
                id=account_id,
                problem=problem,
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

    def stop(self, account_id: int, actor: str) -> ActionResult:
        with self.sessions.begin() as session:
            account = ops.get_account(session, account_id)
            ops.set_desired_state(session, account, DesiredState.STOPPED, actor)
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

    def restart(self, account_id: int, actor: str) -> ActionResult:
        """Stop and start again on its worker; returns once the worker has started the new run (`run`)."""
        with self.sessions.begin() as session:
            account = ops.get_account(session, account_id)
            if account.session_enc is None:
                raise AccountError(f"account {account_id} has no session: log in first", "no_session", id=account_id)
            name = self._worker_name(session, account)
            self._usable_worker(session, name)
            ops.set_desired_state(session, account, DesiredState.RUNNING, actor)
            spec = account_spec(account)
        try:
            answer = self.dispatcher.call(
                name, TaskName.RESTART_ACCOUNT, StartAccount(spec=spec, wait_for_lease=2.0), STOP_TIMEOUT
            )
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
                f"worker {name!r} did not restart account {account_id}: {problem}",
                "restart_refused",
                worker=name,
                id=account_id,
                problem=problem,
            )
        return ActionResult(
            account_id, f"restarting account {account_id} on {name}", True, str(answer.get("run") or "")
        )

    def move(self, account_id: int, to_worker: str, actor: str) -> ActionResult:
        """Stop on the old worker (its lease is released), then start on the new one if it should run."""
        with self.sessions() as session:
            account = ops.get_account(session, account_id)
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
            account = ops.get_account(session, account_id)
            ops.assign_worker(session, account, ops.get_worker(session, target.name), actor, old)
            spec = account_spec(account) if should_run else None
        if spec is not None:
            self.dispatcher.send(
                target.name, TaskName.START_ACCOUNT, StartAccount(spec=spec, wait_for_lease=self.lease_wait)
            )
            return ActionResult(
                account_id, f"account {account_id} moved from {old} to {target.name} and is starting there", True
            )
        return ActionResult(account_id, f"account {account_id} moved from {old} to {target.name}", False)

    def remove(self, account_id: int, actor: str) -> ActionResult:
        """Stop the account (if its worker is online), then delete it and wipe its secrets."""
        with self.sessions() as session:
            account = ops.get_account(session, account_id)
            name = self._worker_name(session, account) if account.worker_id is not None else None
        if name is not None and self._worker_online(name):
            try:
                self.dispatcher.call(name, TaskName.STOP_ACCOUNT, AccountRef(account_id=account_id), STOP_TIMEOUT)
            except WorkerDidNotAnswer as error:
                raise AccountError(
                    f"{error}: not removed, because it may still be running", "no_answer_not_removed", **error.values
                ) from None
        with self.sessions.begin() as session:
            ops.delete_account(session, ops.get_account(session, account_id), actor)
        self._forget_on_worker(name, account_id)
        self.redis.delete(keys.account_status(account_id))
        return ActionResult(account_id, f"account {account_id} removed and its secrets wiped", name is not None)

    def bulk(self, worker: str, desired: DesiredState, actor: str, when_back: bool = False) -> list[ActionResult]:
        """Start or stop every account of a worker; starts go in batches (one message per MAX_BATCH accounts)."""
        if desired is DesiredState.STOPPED:
            with self.sessions() as session:
                ids = [a.id for a in ops.list_accounts(session, worker_id=ops.get_worker(session, worker).id)]
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
            target = ops.get_worker(session, worker)
            try:
                self._usable_worker(session, worker)
                usable = True
            except WorkerUnavailable:
                if not when_back:
                    raise
                usable = False
            for account in ops.list_accounts(session, worker_id=target.id):
                if account.session_enc is None:
                    results.append(
                        ActionResult(account.id, f"account {account.id} has no session: log in first", False)
                    )
                    continue
                ops.set_desired_state(session, account, DesiredState.RUNNING, actor)
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
