"""The worker-side service behind the Celery tasks: validate the payload, decrypt, call the manager, answer.

Each method takes the raw JSON payload and returns a JSON-ready dict (a schema from `celery_app.contract`);
a forged or malformed payload gets an `invalid_payload` answer and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from celery_app import keys
from celery_app.contract import (
    AccountList,
    AccountRef,
    AccountSpec,
    AccountStateView,
    CheckProxies,
    CheckSession,
    CheckSessionResult,
    CommandResult,
    CommandResults,
    DeviceIdentity,
    InvalidPayload,
    KeyRotated,
    LoginRef,
    LoginResult,
    LoginState,
    OperateMany,
    OperationsAccepted,
    PingResult,
    ProxyCheckResult,
    ProxyCheckResults,
    SendLoginCode,
    StartAccount,
    StartAccounts,
    SubmitLoginCode,
    SubmitLoginPassword,
    parse_payload,
    validation_message,
)
from celery_app.presence import WorkerInfo
from common.crypto import SecretError
from common.details import Detail
from common.devices import choose_identity
from common.sessions import parse_string_session
from common.validation import InvalidValue, normalize_phone, parse_proxy
from worker.account_manager import AccountManager
from worker.clients import ClientSpec
from worker.login import LoginOutcome
from worker.secrets import WorkerSecrets

if TYPE_CHECKING:
    from worker.operator import OperationExecutor
    from worker.proxy_check import ProxyChecker

log = logging.getLogger(__name__)
Answer = dict[str, Any]


def _at_once(step: Callable[[], None]) -> None:
    step()


def _text(said: Detail | None) -> str:
    """A command's detail as the answer carries it: in English (the control plane shows the account's states,
    which carry the code, to people)."""
    return said.text if said is not None else ""


@dataclass
class WorkerRuntime:
    info: WorkerInfo
    threads: int
    manager: AccountManager
    box: WorkerSecrets  # what this worker can open: sealed to its key (or SECRET_KEY's tokens, given one)
    operator: OperationExecutor | None = None
    proxies: ProxyChecker | None = None
    rotate: Callable[[], str] | None = None  # a new key pair for this worker: its public key (worker/main.py)

    def rotate_key(self) -> Answer:
        if self.rotate is None:
            return InvalidPayload(message="this worker cannot rotate its key").model_dump()
        return KeyRotated(public_key=self.rotate()).model_dump()

    def ping(self) -> Answer:
        return PingResult(
            **self.info.to_dict(), threads=self.threads, accounts_running=len(self.manager.held_accounts())
        ).model_dump()

    # --- accounts

    def _client_spec(self, spec: AccountSpec) -> ClientSpec:
        proxy = parse_proxy(self.box.decrypt(spec.proxy_enc, "proxy_enc")) if spec.proxy_enc else None
        session = self.box.decrypt(spec.session_enc, "session_enc")
        parse_string_session(session)
        phone = normalize_phone(self.box.decrypt(spec.phone_enc, "phone_enc"))
        return ClientSpec(
            spec.account_id,
            phone,
            spec.api_id,
            self.box.decrypt(spec.api_hash_enc, "api_hash_enc"),
            session,
            proxy,
            wire=spec.model_dump_json(),
            device=spec.device or self._chosen_device(phone),
            proxy_id=spec.proxy_id if proxy is not None else None,
        )

    def _chosen_device(self, phone: str) -> DeviceIdentity:
        """A spec from a control plane older than device identities: the identity its database migration gave
        the account (chosen by the same phone lookup key), so the account is the same device either way."""
        return choose_identity(self.box.lookup(phone))

    def resume_from_registry(self) -> int:
        """Start the accounts this worker was running before it stopped or crashed (its spec registry).

        Each start takes the account's lease first: one still held by this worker's earlier process is taken
        over, one held by another worker means the account moved, and it is dropped from the registry.
        """
        entries = self.manager.redis.hgetall(keys.worker_specs(self.info.name))
        specs: list[ClientSpec] = []
        for account_id, raw in entries.items():
            try:
                specs.append(self._client_spec(AccountSpec.model_validate_json(raw)))
            except (ValidationError, SecretError, InvalidValue) as error:
                reason = validation_message(error) if isinstance(error, ValidationError) else str(error)
                log.warning("account %s: dropped from the registry, its spec is unusable: %s", account_id, reason)
                self.manager.redis.hdel(keys.worker_specs(self.info.name), account_id)
        resumed = sum(1 for spec in specs if self.manager.start(spec).ok)
        if specs:
            log.info("resumed %d of %d account(s) this worker was running", resumed, len(specs))
        return resumed

    def start(
        self, raw: Any, restart: bool = False, after_answer: Callable[[Callable[[], None]], None] | None = None
    ) -> Answer:
        """Start (or restart) one account and answer; a started account goes into this worker's registry.

        With `after_answer` (the Celery task passes it), the registry write is handed to it to run once the answer
        is stored: the control plane waits for the answer, not for that write. Without, it is written before
        returning.
        """
        payload = parse_payload(StartAccount, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, StartAccount)
        account_id = payload.spec.account_id
        try:
            spec = self._client_spec(payload.spec)
        except (SecretError, InvalidValue) as error:
            return CommandResult(ok=False, account_id=account_id, status="error", detail=str(error)).model_dump()
        outcome = self.manager.restart(spec) if restart else self.manager.start(spec, payload.wait_for_lease)
        if outcome.ok:
            (after_answer or _at_once)(lambda: self._register(spec))
        return CommandResult(
            ok=outcome.ok, account_id=account_id, status=outcome.status, detail=_text(outcome.detail), run=outcome.run
        ).model_dump()

    def _register(self, spec: ClientSpec) -> None:
        """Write a started account into the registry (what a restart of this worker resumes). If its client has
        ended meanwhile (stopped, moved, refused by Telegram) and it is not parked, the entry is taken out again,
        as the end would have done had it come after the write."""
        self.manager.remember([spec])
        account_id = spec.account_id
        if account_id not in self.manager.runners and account_id not in self.manager.parked:
            self.manager.redis.hdel(keys.worker_specs(self.info.name), str(account_id))

    def start_many(self, raw: Any) -> Answer:
        payload = parse_payload(StartAccounts, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, StartAccounts)
        results = []
        started: list[ClientSpec] = []
        for item in payload.specs:
            try:
                spec = self._client_spec(item)
                outcome = self.manager.start(spec, payload.wait_for_lease)
                result = CommandResult(
                    ok=outcome.ok,
                    account_id=item.account_id,
                    status=outcome.status,
                    detail=_text(outcome.detail),
                    run=outcome.run,
                )
                results.append(result)
                if outcome.ok:
                    started.append(spec)
            except (SecretError, InvalidValue) as error:
                results.append(CommandResult(ok=False, account_id=item.account_id, status="error", detail=str(error)))
        self.manager.remember(started)
        return CommandResults(results=results).model_dump()

    def stop(self, raw: Any) -> Answer:
        payload = parse_payload(AccountRef, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, AccountRef)
        outcome = self.manager.stop(payload.account_id)
        return CommandResult(
            ok=outcome.ok,
            account_id=payload.account_id,
            status=outcome.status,
            detail=_text(outcome.detail),
            run=outcome.run,
        ).model_dump()

    def status(self, raw: Any) -> Answer:
        payload = parse_payload(AccountRef, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, AccountRef)
        state = self.manager.status_of(payload.account_id)
        if state is None:
            return CommandResult(
                ok=True, account_id=payload.account_id, status="stopped", detail="not running on this worker"
            ).model_dump()
        return CommandResult(
            ok=True, account_id=payload.account_id, status=state.status, detail=state.detail, run=state.run
        ).model_dump()

    def list_accounts(self) -> Answer:
        views = [
            AccountStateView(
                account_id=s.account_id,
                status=s.status,
                detail=s.detail,
                until=s.until,
                user_id=s.user_id,
                username=s.username,
                name=s.name,
            )
            for s in sorted(self.manager.running_states(), key=lambda s: s.account_id)
        ]
        return AccountList(accounts=views).model_dump()

    # --- operations

    def operate(self, raw: Any) -> Answer:
        """Queue account operations (`worker.operator`); their progress and outcome go to Redis as they run."""
        payload = parse_payload(OperateMany, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, OperateMany)
        if self.operator is None:
            refused = {request.operation_id: "this worker does not run operations" for request in payload.requests}
            return OperationsAccepted(accepted=[], refused=refused).model_dump()
        accepted, refused = self.operator.submit(list(payload.requests), self._client_spec)
        return OperationsAccepted(accepted=accepted, refused=refused).model_dump()

    # --- pool proxies (`worker.proxy_check`)

    def check_proxies(self, raw: Any) -> Answer:
        """Check the pool proxies the control plane names, now; the outcomes go to Redis as well."""
        payload = parse_payload(CheckProxies, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, CheckProxies)
        if self.proxies is None:
            results = [ProxyCheckResult(proxy_id=t.proxy_id, ok=False, error="error") for t in payload.targets]
            return ProxyCheckResults(results=results).model_dump()
        from worker.proxy_check import probes_for

        probes = probes_for(self.proxies, payload.targets, self.box.opener("proxy_enc"), self.manager.running_specs())
        return ProxyCheckResults(results=self.proxies.check(probes)).model_dump()

    # --- logins

    def _login_answer(self, outcome: LoginOutcome) -> Answer:
        identity = outcome.identity
        return LoginResult(
            state=LoginState(outcome.state),
            error=outcome.error,
            message=outcome.message,
            retry=outcome.retry,
            session_enc=self.box.encrypt(outcome.session, "session_enc") if outcome.session else None,
            user_id=identity.user_id if identity else None,
            username=identity.username if identity else None,
            name=identity.name if identity else None,
            wait_seconds=outcome.wait_seconds,
        ).model_dump()

    def send_code(self, raw: Any) -> Answer:
        payload = parse_payload(SendLoginCode, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, SendLoginCode)
        try:
            proxy = parse_proxy(self.box.decrypt(payload.proxy_enc, "proxy_enc")) if payload.proxy_enc else None
            phone = normalize_phone(self.box.decrypt(payload.phone_enc, "phone_enc"))
            device = payload.device or self._chosen_device(phone)
            api_hash = self.box.decrypt(payload.api_hash_enc, "api_hash_enc")
            spec = ClientSpec(0, phone, payload.api_id, api_hash, "", proxy, device=device)
        except (SecretError, InvalidValue) as error:
            return LoginResult(state=LoginState.FAILED, error="error", message=str(error)).model_dump()
        return self._login_answer(self.manager.send_code(payload.login_id, spec))

    def submit_code(self, raw: Any) -> Answer:
        payload = parse_payload(SubmitLoginCode, raw)
        if isinstance(payload, InvalidPayload):
            return LoginResult(
                state=LoginState.FAILED, error="invalid_code", message=payload.message, retry=True
            ).model_dump()
        assert isinstance(payload, SubmitLoginCode)
        return self._login_answer(self.manager.submit_code(payload.login_id, payload.code))

    def submit_password(self, raw: Any) -> Answer:
        payload = parse_payload(SubmitLoginPassword, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, SubmitLoginPassword)
        try:
            password = self.box.decrypt(payload.password_enc, "password_enc")
        except SecretError as error:
            return LoginResult(state=LoginState.FAILED, error="error", message=str(error)).model_dump()
        return self._login_answer(self.manager.submit_password(payload.login_id, password))

    def cancel_login(self, raw: Any) -> Answer:
        payload = parse_payload(LoginRef, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, LoginRef)
        cancelled = self.manager.cancel_login(payload.login_id)
        return CommandResult(ok=cancelled, account_id=0, status="cancelled" if cancelled else "unknown").model_dump()

    def check_session(self, raw: Any) -> Answer:
        """Can this worker decrypt and read the session? (Same SECRET_KEY, well-formed.) Nothing is sent anywhere."""
        payload = parse_payload(CheckSession, raw)
        if isinstance(payload, InvalidPayload):
            return payload.model_dump()
        assert isinstance(payload, CheckSession)
        try:
            data = parse_string_session(self.box.decrypt(payload.session_enc, "session_enc"))
        except (SecretError, InvalidValue) as error:
            return CheckSessionResult(ok=False, message=str(error)).model_dump()
        return CheckSessionResult(ok=True, message="session readable", dc_id=data.dc_id).model_dump()
