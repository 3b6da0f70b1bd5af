"""What is shown of an account operation: `OperationView` (its row, with what its worker wrote while it is
open), a `Batch` of them, and `LiveOperation` — what a worker wrote about one in Redis (`keys.operation`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.fleet import iso_utc
from celery_app import keys
from celery_app.operations import FINAL_STATUSES, OperationStatus, describe_result
from common.details import Detail, stored
from database.models import Account, AccountOperation, epoch_to_datetime

_OPEN = [status.value for status in OperationStatus if status not in FINAL_STATUSES]
_FINAL = frozenset(status.value for status in FINAL_STATUSES)
_KNOWN = frozenset(status.value for status in OperationStatus)


@dataclass(frozen=True)
class OperationView:
    id: int
    batch: str
    account_id: int
    phone_masked: str
    name: str
    status: str
    result: dict[str, Any]
    error: str  # in English (the CLI, the logs)
    worker: str | None
    until: float | None  # a flood wait's end (epoch seconds)
    created_at: datetime
    finished_at: datetime | None
    coded: Detail | None = None  # the error as a code with parameters: what the bots render

    @property
    def final(self) -> bool:
        return self.status in _FINAL

    @property
    def said(self) -> str:
        """The error in English, made here from its code when it has one (a moment in it is in local time)."""
        return self.coded.text if self.coded is not None else self.error

    @property
    def summary(self) -> str:
        """One line: the result, the error, or where it stands."""
        if self.status == OperationStatus.DONE:
            return describe_result(self.name, self.result)
        if self.status == OperationStatus.FLOOD_WAIT and self.until:
            wait = max(0, round(self.until - time.time()))
            return f"Telegram asked to wait; resumes in {wait} s" + (f" ({self.said})" if self.said else "")
        return self.said

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "batch": self.batch,
            "account_id": self.account_id,
            "phone": self.phone_masked,
            "operation": self.name,
            "status": self.status,
            "result": self.result,
            "error": self.said or None,
            "summary": self.summary,
            "worker": self.worker,
            "flood_wait_until": iso_utc(epoch_to_datetime(self.until)) if self.until else None,
            "created_at": iso_utc(self.created_at),
            "finished_at": iso_utc(self.finished_at),
        }


@dataclass(frozen=True)
class Batch:
    batch: str
    operations: list[OperationView] = field(default_factory=list)


@dataclass(frozen=True)
class LiveOperation:
    """What a worker wrote about an operation (`keys.operation`)."""

    status: str
    worker: str
    instance: str
    result: dict[str, Any]
    error: str
    until: float | None
    coded: Detail | None = None

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> LiveOperation | None:
        if not raw or raw.get("status") not in _KNOWN:
            return None
        try:
            result = json.loads(raw.get("result") or "{}")
        except ValueError:
            result = {}
        until = raw.get("until") or ""
        return cls(
            raw["status"],
            raw.get("worker", ""),
            raw.get("instance", ""),
            result if isinstance(result, dict) else {},
            raw.get("error", ""),
            float(until) if until.replace(".", "", 1).isdigit() else None,
            stored(raw.get("code"), raw.get("error")),
        )


def read_live(redis: Redis, where: Mapping[int, str]) -> dict[int, LiveOperation]:
    """Where each operation stands (operation id -> the worker it was sent to), read in that worker's own keys,
    which no other worker can write."""
    if not where:
        return {}
    operation_ids = list(where)
    pipe = redis.pipeline(transaction=False)
    for operation_id in operation_ids:
        pipe.hgetall(keys.operation(where[operation_id], operation_id))
    found: dict[int, LiveOperation] = {}
    for operation_id, raw in zip(operation_ids, pipe.execute(), strict=True):
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (raw or {}).items()
        }
        live = LiveOperation.from_fields(decoded)
        if live is not None:
            found[operation_id] = live
    return found


def operation_views(
    session: Session, rows: list[AccountOperation], live: dict[int, LiveOperation]
) -> list[OperationView]:
    """Views from the rows and the same live read `OperationsService._record` saw (one read: a worker finishing
    meanwhile cannot pair a final status with a result not read yet)."""
    ids = sorted({r.account_id for r in rows})
    masked = dict(session.execute(select(Account.id, Account.phone_masked).where(Account.id.in_(ids))).all())
    views = []
    for row in rows:
        seen = live.get(row.id)
        try:
            result = json.loads(row.result) if row.result else {}
        except ValueError:
            result = {}
        status, error, until, coded = row.status, row.error, None, stored(row.error_code, row.error)
        if seen is not None and row.status in _OPEN:
            status, error, until, result, coded = seen.status, seen.error, seen.until, seen.result, seen.coded
        views.append(
            OperationView(
                row.id,
                row.batch,
                row.account_id,
                masked.get(row.account_id, "?"),
                row.name,
                status,
                result if isinstance(result, dict) else {},
                error,
                seen.worker if seen is not None and seen.worker else row.worker,
                until,
                row.created_at,
                row.finished_at,
                coded,
            )
        )
    return views
