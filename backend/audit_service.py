"""Reading the audit log (the CLI's `audit`, the bot's Audit page) and keeping it to AUDIT_RETENTION_DAYS.

Rows are written where actions happen (`database.audit.audited`); this service only reads them back as views
and deletes what is older than the retention. Nothing here, or anywhere in the product, edits a row.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common.errors import FleetError
from common.validation import printable
from database.audit import audit_entries, error_outcome, prune_audit, record_audit
from database.models import AuditEntry, utcnow

_SPAN = re.compile(r"^\s*(\d{1,6})\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
PRUNE_BATCH = 5000


class InvalidSince(FleetError, ValueError):
    code = "invalid_since"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`90m`, `1h`, `7d`, `2w` back from now, or a date (`2026-12-01`) or ISO time (UTC unless it says)."""
    now = now or utcnow()
    match = _SPAN.match(text)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        shown = printable(text)[:40]
        raise InvalidSince(f"'{shown}' is not a time span (30m, 1h, 7d) or a date (2026-12-01)", since=shown) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    actor_name: str
    role: str
    action: str
    targets: tuple[str, ...]
    params: dict[str, object]
    outcome: str

    @classmethod
    def of(cls, row: AuditEntry) -> AuditView:
        try:
            params = json.loads(row.params)
        except ValueError:
            params = {"_": row.params}
        return cls(
            row.id,
            row.at,
            row.actor,
            row.actor_name,
            row.role,
            row.action,
            tuple(row.targets.split()),
            params if isinstance(params, dict) else {"_": params},
            row.outcome,
        )

    @property
    def who(self) -> str:
        return f"{self.actor} ({self.actor_name})" if self.actor_name else self.actor

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actor_name": self.actor_name,
            "role": self.role,
            "action": self.action,
            "targets": list(self.targets),
            "params": self.params,
            "outcome": self.outcome,
        }


class AuditService:
    def __init__(self, sessions: sessionmaker[Session], retention_days: float = 365.0) -> None:
        self.sessions = sessions
        self.retention = timedelta(days=retention_days)

    @contextlib.contextmanager
    def action(
        self, actor: str, action: str, targets: Iterable[str] = (), params: Mapping[str, Any] | None = None
    ) -> Iterator[None]:
        """One audit row for what the block does, written when it ends: `ok`, or the error it raised (raised
        on). For actions that are not a service method (`backup`, `restore`, `rekey` work on whole databases)."""
        try:
            yield
        except Exception as error:
            self._record(actor, action, targets, params, error_outcome(error))
            raise
        self._record(actor, action, targets, params, "ok")

    def _record(
        self, actor: str, action: str, targets: Iterable[str], params: Mapping[str, Any] | None, outcome: str
    ) -> None:
        with self.sessions.begin() as session:
            record_audit(session, actor, action, targets, params, outcome)

    def entries(
        self,
        since: str | datetime | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[AuditView]:
        """Newest first, at most `limit`; `before_id` pages back (the id of the oldest row shown)."""
        start = parse_since(since) if isinstance(since, str) else since
        with self.sessions() as session:
            rows = audit_entries(
                session, since=start, actor=actor, target=target, action=action, before_id=before_id, limit=limit
            )
            return [AuditView.of(row) for row in rows]

    def prune(self, now: datetime | None = None, budget_rows: int = 50_000) -> int:
        """Delete rows older than the retention, in small transactions; returns how many went."""
        cutoff = (now or utcnow()) - self.retention
        removed = 0
        while removed < budget_rows:
            with self.sessions.begin() as session:
                gone = prune_audit(session, cutoff, PRUNE_BATCH)
            removed += gone
            if gone < PRUNE_BATCH:
                break
        return removed
