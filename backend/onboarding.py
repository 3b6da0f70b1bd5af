"""Bringing an account into the fleet: importing an existing session (nothing is sent to Telegram), or logging
in on a worker — a code, then a 2FA password if the account has one — and checking a worker can read a stored
session. A login in progress lives in Redis for LOGIN_TTL_SECONDS; secrets are encrypted before they leave
this module."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.account_views import AccountView, AccountViews
from backend.dispatch import WorkerDidNotAnswer, WorkerRejectedCall
from backend.errors import AccountError, LoginError
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
from common.sessions import parse_string_session, session_file_to_string
from common.validation import (
    InvalidValue,
    mask_phone,
    normalize_phone,
    parse_proxy,
    validate_api_hash,
    validate_api_id,
)
from database import accounts as accounts_db
from database import workers as workers_db
from database.errors import AccountExists
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


def _login_code(answer: dict[str, Any]) -> str:
    """The worker's code for a failed login step; one this control plane does not know reads as "error"."""
    code = str(answer.get("error") or "error")
    return code if code in CODES else "error"


def _login_key(login_id: str) -> str:
    return f"{keys.PREFIX}:login:{login_id}"


class Onboarding(AccountViews):
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
            target = workers_db.get_worker(session, worker)
            existing = accounts_db.find_account_by_phone(session, box.lookups(normalized_phone))
            if existing is not None:
                exists = AccountExists(mask_phone(normalized_phone), existing.id)
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
            accounts_db.set_device(account, identity)
            accounts_db.create_account(
                session, account, FleetEventKind.ACCOUNT_IMPORTED, detail("on_worker", worker=target.name), actor
            )
            account_id = account.id
        return self.get_account(account_id)

    def check_session_on_worker(self, account_id: int, timeout: float = 15.0) -> str:
        """Ask the account's worker whether it can read the stored session (same SECRET_KEY)."""
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

    def begin_login(
        self, worker: str, phone: str, api_id: object, api_hash: str, *, proxy: str | None = None, actor: str
    ) -> LoginStep:
        normalized_phone, checked_api_id, checked_hash = self._credentials(phone, api_id, api_hash)
        assert normalized_phone is not None
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
