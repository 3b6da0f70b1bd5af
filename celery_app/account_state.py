"""An account's live state as workers report it: the status vocabulary and the Redis hash/event encoding."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from redis import Redis

from celery_app import keys
from common.details import Detail


class AccountStatus(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    LOGIN_PENDING = "login_pending"
    ERROR = "error"
    UNAUTHORIZED = "unauthorized"
    BANNED = "banned"
    FLOOD_WAIT = "flood_wait"
    LOST = "lost"


# Shown (never stored) when no live source can say what an account is doing: its worker is silent.
UNKNOWN = "unknown"

# Statuses that need an admin (a new login, an appeal, a fix): nobody restarts these automatically.
NEEDS_ADMIN = frozenset({AccountStatus.UNAUTHORIZED, AccountStatus.BANNED})
# Statuses a runner has while it exists on a worker (a transient error is retried by the runner itself).
RUNNER_STATUSES = frozenset(
    {
        AccountStatus.STARTING,
        AccountStatus.RUNNING,
        AccountStatus.STOPPING,
        AccountStatus.FLOOD_WAIT,
        AccountStatus.ERROR,
    }
)


@dataclass(frozen=True)
class AccountState:
    """What a worker says about one account; `active` is true while a runner exists for it on that worker.

    `run` identifies one runner's life (a restart gets a new one), so a caller can wait for the outcome of
    its own request; `at` is the worker's clock, `rt` the Redis server time at which the state was written.
    """

    account_id: int
    status: AccountStatus
    worker: str
    detail: str = ""  # in English, for the CLI and the logs
    until: float | None = None  # flood-wait end, epoch seconds
    active: bool = False
    user_id: int | None = None
    username: str | None = None
    name: str | None = None
    at: float = field(default=0.0)
    run: str = ""
    rt: float = 0.0
    code: str = ""  # the detail as a code with parameters (`common.details.Detail.encode`), for the bots

    @property
    def coded(self) -> Detail | None:
        """The detail as the bots render it (None from a worker older than codes: then `detail` is shown)."""
        return Detail.decode(self.code)

    def to_fields(self) -> dict[str, str]:
        raw = asdict(self)
        raw.pop("rt")  # stamped by the writer with Redis server time
        return {
            key: "" if value is None else str(int(value) if isinstance(value, bool) else value)
            for key, value in raw.items()
        }

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> AccountState | None:
        try:
            return cls(
                account_id=int(raw["account_id"]),
                status=AccountStatus(raw["status"]),
                worker=raw.get("worker", ""),
                detail=raw.get("detail", ""),
                until=float(raw["until"]) if raw.get("until") else None,
                active=raw.get("active") in ("1", "True", "true"),
                user_id=int(raw["user_id"]) if raw.get("user_id") else None,
                username=raw.get("username") or None,
                name=raw.get("name") or None,
                at=float(raw.get("at") or 0),
                run=raw.get("run", ""),
                rt=float(raw.get("rt") or 0),
                code=raw.get("code", ""),
            )
        except (KeyError, ValueError):
            return None


def read_states(redis: Redis, where: Mapping[int, str]) -> dict[int, AccountState]:
    """The status hashes the given workers wrote for these accounts (account id -> the worker it is on), in one
    round trip: what a worker says of an account is read in that worker's own keys, which no other can write."""
    if not where:
        return {}
    account_ids = list(where)
    pipe = redis.pipeline(transaction=False)
    for account_id in account_ids:
        pipe.hgetall(keys.account_state(where[account_id], account_id))
    states: dict[int, AccountState] = {}
    for account_id, raw in zip(account_ids, pipe.execute(), strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (raw or {}).items()
        }
        state = AccountState.from_fields(decoded) if decoded else None
        if state is not None:
            states[account_id] = state
    return states
