"""An account's live state as workers report it: the status vocabulary and the Redis hash/event encoding."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field


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


# Statuses that need an admin (a new login, an appeal, a fix): nobody restarts these automatically.
NEEDS_ADMIN = frozenset({AccountStatus.UNAUTHORIZED, AccountStatus.BANNED})
# Statuses after which the backend brings an account back when its desired state is running.
RESTARTABLE = frozenset({AccountStatus.STOPPED, AccountStatus.LOST})


@dataclass(frozen=True)
class AccountState:
    """What a worker says about one account; `active` is true while a runner exists for it on that worker."""

    account_id: int
    status: AccountStatus
    worker: str
    detail: str = ""
    until: float | None = None  # flood-wait end, epoch seconds
    active: bool = False
    user_id: int | None = None
    username: str | None = None
    name: str | None = None
    at: float = field(default=0.0)

    def to_fields(self) -> dict[str, str]:
        raw = asdict(self)
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
            )
        except (KeyError, ValueError):
            return None
