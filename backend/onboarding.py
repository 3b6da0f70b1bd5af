"""Bringing an account into the fleet: importing an existing session (nothing is sent to Telegram), or logging
in on a worker — a code, then a 2FA password if the account has one — and checking a worker can read a stored
session. A login in progress lives in Redis for LOGIN_TTL_SECONDS; secrets are encrypted before they leave
this module.

Without an API ID and hash of its own, an account gets an app of the pool (`backend.app_choice`): an import
in the transaction that writes the account, a login when it starts (a claim holds the app's place until the
login ends). A session already in the fleet is refused at import, naming the account that has it
(`database.session_keys`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from backend.account_views import AccountView, AccountViews
from backend.app_choice import CHOICE_ATTEMPTS, AppRequest, Credentials, choose
from backend.dispatch import WorkerDidNotAnswer, WorkerRejectedCall
from backend.errors import AccountError, LoginError
from backend.session_sources import saved_upload
from celery_app import keys
from celery_app.account_state import AccountStatus
from celery_app.contract import (
    CheckSession,
    DeviceIdentity,
    LoginRef,
    SendLoginCode,
    SubmitLoginCode,
    SubmitLoginPassword,
    TaskName,
)
from common.details import detail
from common.devices import choose_identity, complete_identity
from common.errors import CODES
from common.session_formats import read_sessions
from common.validation import InvalidValue, mask_phone, normalize_phone, parse_proxy
from database import accounts as accounts_db
from database import apps as apps_db
from database import session_keys
from database import workers as workers_db
from database.audit import audited, named
from database.errors import AccountExists, AppPoolExhausted
from database.models import Account, DesiredState, FleetEventKind

LOGIN_TTL_SECONDS = 300
LOGIN_CALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoginStep:
    """Where a login stands: `code_sent`, `password_needed` or `authorized` (then `account` is set)."""

    login_id: str
    state: str
    message: str
    account: AccountView | None = None


@dataclass(frozen=True)
class _Sealed:
    """An import's phone and session, encrypted once for all its tries."""

    phone_enc: str
    session_enc: str
    password_enc: str | None = None  # its 2FA password, when the import gives it


def _login_code(answer: dict[str, Any]) -> str:
    """The worker's code for a failed login step; one this control plane does not know reads as "error"."""
    code = str(answer.get("error") or "error")
    return code if code in CODES else "error"


def _imported(arguments: Mapping[str, Any], account: AccountView | None) -> list[str]:
    return [f"worker:{arguments['worker']}", *([f"account:{account.id}"] if account is not None else [])]


def _logged_in(_arguments: Mapping[str, Any], step: LoginStep | None) -> list[str]:
    return [f"account:{step.account.id}"] if step is not None and step.account is not None else []


def _login_outcome(step: LoginStep) -> str:
    return "ok" if step.state == "authorized" else step.state


def _login_key(login_id: str) -> str:
    return f"{keys.PREFIX}:login:{login_id}"


def _session_in_fleet(holder: Account) -> AccountError:
    return AccountError(
        f"this session is account {holder.id} ({holder.phone_masked}) of the fleet already: one session cannot "
        "run in two places (Telegram revokes it: AUTH_KEY_DUPLICATED)",
        "session_in_fleet",
        id=holder.id,
        phone=holder.phone_masked,
    )


def _session_string(session_string: str | None, session_file: bytes | None) -> str:
    """The Telethon string the fleet stores for one session given as a string or a file's bytes, in any format
    `common.session_formats` reads (a bot's session, a damaged file or several sessions are refused)."""
    try:
        if session_file is not None:
            with saved_upload("", session_file) as path:  # no suffix: the content says what it is
                found = read_sessions(path)
        elif session_string is not None:
            found = read_sessions(session_string.strip())
        else:
            raise AccountError("give a session string or a .session file", "session_missing")
    except InvalidValue as error:
        code = "session_bot" if error.code == "session_bot" else "session"
        raise AccountError(str(error), code, detail=str(error)) from None
    if len(found) != 1:
        problem = f"the file holds {len(found)} sessions: import them one at a time"
        raise AccountError(problem, "session", detail=problem)
    return found[0].session.to_string()


class Onboarding(AccountViews):
    _session_keys_filled = False  # whether this process gave the accounts stored before 0010 their session hash

    def _validated_proxy(self, proxy: str | None) -> str | None:
        if proxy is None or not proxy.strip():
            return None
        try:
            return self.box.encrypt(parse_proxy(proxy).url())
        except InvalidValue as error:
            raise AccountError(str(error), "proxy", problem=str(error)) from None

    @staticmethod
    def _phone(phone: str | None) -> str | None:
        try:
            return normalize_phone(phone) if phone else None
        except InvalidValue as error:
            raise AccountError(str(error), error.code, problem=str(error)) from None

    def app_pool_has_room(self) -> bool:
        """Whether a login or an import without an API ID and hash would get an app of the pool now."""
        with self.sessions() as session:
            return any(not load.full for load in apps_db.app_loads(session))

    # --- import -----------------------------------------------------------------------------------------

    @audited("account.import", _imported, params=("api_id", "phone", "proxy", "device", "session_string"))
    def import_session(
        self,
        worker: str,
        api_id: object = None,
        api_hash: str | None = None,
        *,
        session_string: str | None = None,
        session_file: bytes | None = None,
        phone: str | None = None,
        proxy: str | None = None,
        device: DeviceIdentity | Mapping[str, str] | None = None,
        password: str | None = None,
        actor: str,
    ) -> AccountView:
        """Store an existing session on a worker (nothing is sent to Telegram). The phone is required.

        Without `api_id` and `api_hash` (None or "") the account gets the pool's least loaded app under its cap;
        with `api_id` alone, that app of the pool. A session that is an account already is refused, naming it.
        `device` is the identity the session was used with (from its export's sidecar: `common.devices`),
        whole or in part; what it does not give is taken from the identity chosen for the account.
        `password`, the account's 2FA password (from the sidecar), is kept encrypted for the `2fa` operation.
        """
        string = _session_string(session_string, session_file)
        normalized_phone = self._phone(phone)
        request = AppRequest.of(api_id, api_hash)
        if normalized_phone is None:
            raise AccountError("the phone number of the imported account is required (--phone)", "phone_required")
        proxy_enc = self._validated_proxy(proxy)
        box = self.box
        try:
            identity = complete_identity(device, choose_identity(box.lookup(normalized_phone)))
        except InvalidValue as error:
            raise AccountError(str(error), "device", problem=str(error)) from None
        self._fill_session_keys()
        sealed = _Sealed(
            box.encrypt(normalized_phone), box.encrypt(string), box.encrypt(password) if password else None
        )
        for _attempt in range(CHOICE_ATTEMPTS):
            try:
                account_id = self._store_import(
                    worker, normalized_phone, string, sealed, request, proxy_enc, identity, actor
                )
                return self.get_account(account_id)
            except IntegrityError as error:
                if not apps_db.is_cap_refusal(error):
                    raise self._import_conflict(error, normalized_phone, string) from None
                # another import took the app's last place meanwhile: choose again
        with self.sessions() as session:
            raise AppPoolExhausted(len(apps_db.app_loads(session)))

    def _store_import(
        self,
        worker: str,
        phone: str,
        string: str,
        sealed: _Sealed,
        request: AppRequest,
        proxy_enc: str | None,
        identity: DeviceIdentity,
        actor: str,
    ) -> int:
        """One try at writing the imported account (an IntegrityError if the database refuses it)."""
        box = self.box
        with self.sessions.begin() as session:
            target = workers_db.get_worker(session, worker)
            existing = accounts_db.find_account_by_phone(session, box.lookups(phone))
            if existing is not None:
                exists = AccountExists(mask_phone(phone), existing.id)
                raise AccountError(str(exists), exists.code, **exists.values)
            holder = session_keys.find_by_session(session, session_keys.session_lookups(box, string))
            if holder is not None:
                raise _session_in_fleet(holder)
            account = Account(
                phone_enc=sealed.phone_enc,
                phone_lookup=box.lookup(phone),
                phone_masked=mask_phone(phone),
                session_enc=sealed.session_enc,
                session_lookup=session_keys.session_lookup(box, string),
                proxy_enc=proxy_enc,
                password_enc=sealed.password_enc,
                worker_id=target.id,
                desired_state=DesiredState.STOPPED.value,
                status=AccountStatus.STOPPED.value,
                status_detail=detail("imported").text,
                status_code=detail("imported").encode(),
            )
            choose(session, box, request).give(account)
            accounts_db.set_device(account, identity)
            accounts_db.create_account(
                session, account, FleetEventKind.ACCOUNT_IMPORTED, detail("on_worker", worker=target.name), actor
            )
            return account.id

    def _import_conflict(self, error: IntegrityError, phone: str, string: str) -> Exception:
        """What a unique index refused, as the refusal the pre-checks give (another import got there first)."""
        box = self.box
        with self.sessions() as session:
            if session_keys.is_session_conflict(error):
                holder = session_keys.find_by_session(session, session_keys.session_lookups(box, string))
                if holder is not None:
                    return _session_in_fleet(holder)
            existing = accounts_db.find_account_by_phone(session, box.lookups(phone))
            if existing is not None:
                exists = AccountExists(mask_phone(phone), existing.id)
                return AccountError(str(exists), exists.code, **exists.values)
        return error

    def _fill_session_keys(self) -> None:
        """Once per process: the accounts stored before sessions were hashed get their hash, so that the check
        against sessions already in the fleet sees them too."""
        if not self._session_keys_filled:
            session_keys.backfill(self.sessions, self.box)
            self._session_keys_filled = True

    def check_session_on_worker(self, account_id: int, timeout: float = 15.0) -> str:
        """Ask the account's worker whether it can read the stored session (sealed to it, or the same SECRET_KEY),
        once this process's SECRET_KEY is known to be the fleet's (what it stores, the others must open)."""
        if not self.secret_key_is_the_fleets():
            raise AccountError(
                "this process's SECRET_KEY is not the fleet's (the key check the control plane keeps in Redis was "
                "encrypted under another SECRET_KEY): the backend and the workers cannot use what it stores",
                "secret_key_mismatch",
            )
        with self.sessions() as session:
            account = accounts_db.get_account(session, account_id)
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

    # --- login ------------------------------------------------------------------------------------------

    @audited("account.login", named(("worker", "worker")), params=("phone", "api_id", "proxy"))
    def begin_login(
        self,
        worker: str,
        phone: str,
        api_id: object = None,
        api_hash: str | None = None,
        *,
        proxy: str | None = None,
        actor: str,
    ) -> LoginStep:
        """Ask the worker to have Telegram send a login code. Without `api_id` and `api_hash` a known account logs
        in again with its own app, a new one with the pool's (`import_session` says how); a pooled app is
        claimed until the login ends, so that logins in progress count against its cap."""
        normalized_phone = self._phone(phone)
        request = AppRequest.of(api_id, api_hash)
        if normalized_phone is None:
            raise AccountError("the phone number is required", "phone", problem="empty")
        proxy_enc = self._validated_proxy(proxy)
        box = self.box
        with self.sessions() as session:
            target = self._usable_worker(session, worker)
            existing = accounts_db.find_account_by_phone(session, box.lookups(normalized_phone))
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
            device = (
                accounts_db.device_of(existing)
                if existing is not None
                else choose_identity(box.lookup(normalized_phone))
            )
            known = Credentials.of_account(existing) if existing is not None else None
        login_id = uuid.uuid4().hex
        credentials, claimed = self._login_credentials(login_id, request, known)
        phone_enc = box.encrypt(normalized_phone)
        payload = SendLoginCode(
            login_id=login_id,
            phone_enc=phone_enc,
            api_id=credentials.api_id,
            api_hash_enc=credentials.api_hash_enc,
            proxy_enc=proxy_enc,
            device=device,
        )
        try:
            answer = self._login_call(target.name, TaskName.SEND_LOGIN_CODE, payload)
            if answer.get("state") != "code_sent":
                raise LoginError(
                    str(answer.get("message") or "could not send the code"),
                    _login_code(answer),
                    False,
                    problem=str(answer.get("message") or ""),
                )
        except Exception:
            if claimed:
                self._release_claim(login_id)
            raise
        record = {
            "worker": target.name,
            "phone_enc": phone_enc,
            "api_id": str(credentials.api_id),
            "api_hash_enc": credentials.api_hash_enc,
            "app_id": "" if credentials.app_id is None else str(credentials.app_id),
            "claimed": "1" if claimed else "",
            "proxy_enc": proxy_enc or "",
            "device": device.model_dump_json(),
            "actor": actor,
        }
        self.redis.set(_login_key(login_id), json.dumps(record), ex=LOGIN_TTL_SECONDS)
        return LoginStep(
            login_id, "code_sent", "code sent: type it with spaces, like 1 2 3 4 5 (Telegram voids codes sent as is)"
        )

    def _login_credentials(
        self, login_id: str, request: AppRequest, known: Credentials | None
    ) -> tuple[Credentials, bool]:
        """The app a login uses, and whether it claimed a place under the app's cap for the login's time. A known
        account given no credentials keeps its own; one that comes back to the app it has holds its place."""
        if known is not None and request.api_id is None:
            return known, False
        known_app = known.app_id if known is not None else None
        for _attempt in range(CHOICE_ATTEMPTS):
            try:
                with self.sessions.begin() as session:
                    credentials = choose(session, self.box, request, known_app)
                    claimed = credentials.app_id is not None and credentials.app_id != known_app
                    if claimed:
                        assert credentials.app_id is not None
                        apps_db.claim(session, credentials.app_id, login_id)
                return credentials, claimed
            except IntegrityError as error:
                if not apps_db.is_cap_refusal(error):
                    raise
        with self.sessions() as session:
            raise AppPoolExhausted(len(apps_db.app_loads(session)))

    def _release_claim(self, login_id: str) -> bool:
        with self.sessions.begin() as session:
            return apps_db.release(session, login_id)

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

    @audited("account.login_code", _logged_in, outcome=_login_outcome)
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

    @audited("account.login_password", _logged_in, outcome=_login_outcome)
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
            if record.get("claimed"):
                self._release_claim(login_id)
            self.dispatcher.send(record["worker"], TaskName.CANCEL_LOGIN, LoginRef(login_id=login_id))

    def _login_answer(self, login_id: str, record: dict[str, str], answer: dict[str, Any]) -> LoginStep:
        state = answer.get("state")
        if state == "password_needed":
            return LoginStep(login_id, "password_needed", str(answer.get("message") or "send the 2FA password"))
        if state != "authorized":
            if not answer.get("retry"):
                self.redis.delete(_login_key(login_id))
                if record.get("claimed"):
                    self._release_claim(login_id)
            raise LoginError(
                str(answer.get("message") or "login failed"),
                _login_code(answer),
                bool(answer.get("retry")),
                problem=str(answer.get("message") or ""),
            )
        self.redis.delete(_login_key(login_id))
        box = self.box
        phone = box.decrypt(record["phone_enc"])
        app_id = int(record["app_id"]) if record.get("app_id") else None
        with self.sessions.begin() as session:
            # The claim gives its place to the account; one that is gone (its app removed meanwhile) leaves the
            # account with the app's credentials as its own, outside the pool.
            if record.get("claimed") and not apps_db.release(session, login_id):
                app_id = None
            worker = workers_db.get_worker(session, record["worker"])
            account = accounts_db.find_account_by_phone(session, box.lookups(phone))
            if account is None:
                account = Account(
                    phone_enc=record["phone_enc"],
                    phone_lookup=box.lookup(phone),
                    phone_masked=mask_phone(phone),
                    desired_state=DesiredState.STOPPED.value,
                )
                session.add(account)
            Credentials(int(record["api_id"]), record["api_hash_enc"], app_id).give(account)
            sealer = self.dispatcher.sealer  # the worker sealed the new session to the control plane
            account.session_enc = (
                sealer.receive(answer["session_enc"], "session_enc") if sealer else answer["session_enc"]
            )
            account.session_lookup = session_keys.stored_session_lookup(box, account.session_enc)
            account.proxy_enc = record["proxy_enc"] or None
            account.worker_id = worker.id
            account.status = AccountStatus.STOPPED.value
            account.status_detail, account.status_code = detail("logged_in").text, detail("logged_in").encode()
            account.tg_user_id = answer.get("user_id")
            account.tg_username = answer.get("username")
            account.tg_name = answer.get("name")
            if record.get("device"):  # the identity the session was just created with
                accounts_db.set_device(account, DeviceIdentity.model_validate_json(record["device"]))
            accounts_db.create_account(
                session,
                account,
                FleetEventKind.ACCOUNT_LOGGED_IN,
                detail("on_worker", worker=worker.name),
                record["actor"],
            )
            account_id = account.id
        return LoginStep(login_id, "authorized", "logged in", self.get_account(account_id))
