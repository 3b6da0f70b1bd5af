"""Task names, the per-worker queue, and the payload/result schemas every task is validated against.

Every task takes one JSON object (a `Payload`) and returns one; secrets and phone numbers inside payloads are
Fernet tokens (`*_enc` fields, see `common.crypto`), never clear text: payloads wait in Redis. Unknown
fields are refused, so a forged or stale payload fails validation with a clear message instead of doing
something unexpected.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from celery_app.operations import OperationName
from common.devices import DeviceIdentity
from common.validation import InvalidValue, has_unsafe_characters, normalize_login_code, validation_message

QUEUE_PREFIX = "worker."
# Commands expire if a worker does not pick them up in time (it was offline): nothing runs stale.
COMMAND_EXPIRES_SECONDS = 60


def queue_for(worker_name: str) -> str:
    """The Celery queue a worker consumes: `worker.<name>`."""
    return f"{QUEUE_PREFIX}{worker_name}"


# A task's id names the worker it is sent to (`w1:<hex>`), so a worker's own Redis login may write the results
# of its own tasks only (`backend.worker_logins`). A colon cannot occur in a worker's name
# (`config.WORKER_NAME_PATTERN`): `w1:` never begins an id of worker `w1.eu` or `w10`.
TASK_ID_SEP = ":"


def task_id_for(worker_name: str) -> str:
    """A new task id for a message to `worker_name`: its name, TASK_ID_SEP and a random hex."""
    return f"{worker_name}{TASK_ID_SEP}{uuid.uuid4().hex}"


class TaskName(enum.StrEnum):
    PING = "fleet.ping"
    START_ACCOUNT = "fleet.account.start"
    START_ACCOUNTS = "fleet.account.start_many"
    STOP_ACCOUNT = "fleet.account.stop"
    RESTART_ACCOUNT = "fleet.account.restart"
    ACCOUNT_STATUS = "fleet.account.status"
    LIST_ACCOUNTS = "fleet.account.list"
    SEND_LOGIN_CODE = "fleet.login.send_code"
    SUBMIT_LOGIN_CODE = "fleet.login.submit_code"
    SUBMIT_LOGIN_PASSWORD = "fleet.login.submit_password"  # noqa: S105 - a task name
    CANCEL_LOGIN = "fleet.login.cancel"
    CHECK_SESSION = "fleet.session.check"
    OPERATE = "fleet.account.operate"
    CHECK_PROXIES = "fleet.proxy.check"
    ROTATE_KEY = "fleet.worker.rotate_key"


class Payload(BaseModel):
    """Base for payloads and results: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def masked_repr(self) -> str:
        """The payload as Celery's tools and logs may show it: every secret field is `***`."""
        return repr(masked(self.model_dump(mode="json")))


# Fields that are secret in clear; every `*_enc` field (encrypted) is masked too, being of no use to a reader.
SECRET_FIELDS = frozenset({"code", "password", "session", "api_hash", "phone", "photo_b64"})


def masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "***" if (key in SECRET_FIELDS or str(key).endswith("_enc")) and item is not None else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


AccountId = Annotated[int, Field(gt=0, lt=2**63)]
ApiId = Annotated[int, Field(gt=0, lt=2**31)]
Token = Annotated[str, Field(min_length=20, max_length=10_000)]
LoginId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


def _as_value_error(check: Callable[[str], str]) -> Callable[[str], str]:
    def run(value: str) -> str:
        try:
            return check(value)
        except InvalidValue as error:
            raise ValueError(str(error)) from None

    return run


LoginCode = Annotated[str, AfterValidator(_as_value_error(normalize_login_code))]


class PingResult(Payload):
    name: str
    address: str
    host: str
    pid: int
    version: str
    started_at: float
    instance: str
    threads: int
    accounts_running: int
    max_accounts: int = 0  # WORKER_MAX_ACCOUNTS: the worker refuses starts beyond it (0: not said)
    public_key: str = ""  # the worker's public key (common.sealing); "": a worker from before keys


class KeyRotated(Payload):
    """A worker's answer to ROTATE_KEY: the public half of the key pair it made and now opens with."""

    public_key: str = Field(min_length=43, max_length=43)


class AccountSpec(Payload):
    """Everything a worker needs to run an account; secrets and the phone number encrypted."""

    account_id: AccountId
    phone_enc: Token
    api_id: ApiId
    api_hash_enc: Token
    session_enc: Token
    proxy_enc: Token | None = None
    proxy_id: AccountId | None = None  # the pool proxy `proxy_enc` is (`celery_app.proxy_health`), if any
    device: DeviceIdentity | None = None  # None from an older control plane: the worker chooses the same one


class StartAccount(Payload):
    spec: AccountSpec
    # Seconds to wait for the lease to come free (a move waits for the old worker to let go).
    wait_for_lease: float = Field(default=0.0, ge=0, le=300)


MAX_BATCH = 500


class StartAccounts(Payload):
    """Many starts in one message (bulk start, a restarted worker's accounts)."""

    specs: Annotated[list[AccountSpec], Field(min_length=1, max_length=MAX_BATCH)]
    wait_for_lease: float = Field(default=0.0, ge=0, le=300)


class AccountRef(Payload):
    account_id: AccountId


class CommandResult(Payload):
    ok: bool
    account_id: int
    status: str
    detail: str = ""
    run: str = ""  # the runner this command started or found: its states carry the same `run`


class CommandResults(Payload):
    results: list[CommandResult]


class AccountStateView(Payload):
    account_id: int
    status: str
    detail: str = ""
    until: float | None = None
    user_id: int | None = None
    username: str | None = None
    name: str | None = None


class AccountList(Payload):
    accounts: list[AccountStateView]


class SendLoginCode(Payload):
    login_id: LoginId
    phone_enc: Token
    api_id: ApiId
    api_hash_enc: Token
    proxy_enc: Token | None = None
    device: DeviceIdentity | None = None  # the identity the new session is created with, and keeps


class SubmitLoginCode(Payload):
    login_id: LoginId
    code: LoginCode


class SubmitLoginPassword(Payload):
    login_id: LoginId
    password_enc: Token


class LoginRef(Payload):
    login_id: LoginId


class LoginState(enum.StrEnum):
    CODE_SENT = "code_sent"
    PASSWORD_NEEDED = "password_needed"  # noqa: S105 - a state name
    AUTHORIZED = "authorized"
    FAILED = "failed"


class LoginResult(Payload):
    state: LoginState
    error: str | None = None
    message: str = ""
    retry: bool = False
    session_enc: str | None = None
    user_id: int | None = None
    username: str | None = None
    name: str | None = None
    wait_seconds: int | None = None


class CheckSession(Payload):
    session_enc: Token


class CheckSessionResult(Payload):
    ok: bool
    message: str = ""
    dc_id: int | None = None


# --- account operations (`celery_app.operations`)

PHOTO_MAX_BYTES = 2 * 1024 * 1024  # a profile photo; Telegram scales it down anyway
Username = Annotated[str, Field(pattern=r"^$|^[A-Za-z][A-Za-z0-9_]{3,31}$")]


def _profile_text(value: str) -> str:
    if has_unsafe_characters(value):
        raise ValueError("must not hold control or bidi characters")
    return value.strip()


ProfileText = Annotated[str, AfterValidator(_profile_text)]


class ProfileParams(Payload):
    """`profile`: what to change; a field left out stays as it is (`""` clears last name, bio, username)."""

    first_name: Annotated[ProfileText, Field(min_length=1, max_length=64)] | None = None
    last_name: Annotated[ProfileText, Field(max_length=64)] | None = None
    bio: Annotated[ProfileText, Field(max_length=70)] | None = None
    username: Username | None = None
    photo_b64: Annotated[str, Field(max_length=(PHOTO_MAX_BYTES * 4) // 3 + 4)] | None = None  # JPEG or PNG


class TwoFaParams(Payload):
    """`2fa`: without `new_password_enc`, only report whether a password is set."""

    current_password_enc: Token | None = None
    new_password_enc: Token | None = None
    hint: Annotated[ProfileText, Field(max_length=64)] = ""


class NoParams(Payload):
    pass


OPERATION_PARAMS: dict[OperationName, type[Payload]] = {
    OperationName.CHECK: NoParams,
    OperationName.SESSIONS: NoParams,
    OperationName.TERMINATE_OTHERS: NoParams,
    OperationName.TWO_FA: TwoFaParams,
    OperationName.PROFILE: ProfileParams,
}


class OperationRequest(Payload):
    """Run one operation on an account; `spec` lets a worker connect an account that is not running."""

    operation_id: Annotated[int, Field(gt=0, lt=2**63)]
    name: OperationName
    params: dict[str, Any] = Field(default_factory=dict)
    spec: AccountSpec


class OperateMany(Payload):
    requests: Annotated[list[OperationRequest], Field(min_length=1, max_length=MAX_BATCH)]


class OperationsAccepted(Payload):
    accepted: list[int]  # operation ids queued on the worker
    refused: dict[int, str] = Field(default_factory=dict)  # operation id -> why (bad params, undecryptable)


# --- proxy checks (`celery_app.proxy_health`)


class ProxyTarget(Payload):
    """A pool proxy to check: a real connection through it to a data centre (`dc_id`: the worker's custom
    endpoint when it has one, else that Telegram DC; None: the DC of an account using it here, else DC 2)."""

    proxy_id: AccountId
    proxy_enc: Token
    dc_id: Annotated[int, Field(ge=1, le=1000)] | None = None


class CheckProxies(Payload):
    targets: Annotated[list[ProxyTarget], Field(min_length=1, max_length=MAX_BATCH)]


class ProxyCheckResult(Payload):
    proxy_id: int
    ok: bool
    latency_ms: float | None = None
    error: str = ""  # a code (`celery_app.proxy_health.PROBE_ERRORS`), never the proxy's words
    failures: int = 0  # consecutive failed checks of this proxy on this worker


class ProxyCheckResults(Payload):
    results: list[ProxyCheckResult]


class InvalidPayload(Payload):
    ok: bool = False
    error: str = "invalid_payload"
    message: str


def parse_payload(model: type[Payload], raw: Any) -> Payload | InvalidPayload:
    if not isinstance(raw, dict):
        return InvalidPayload(message="payload must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return InvalidPayload(message=validation_message(error))
