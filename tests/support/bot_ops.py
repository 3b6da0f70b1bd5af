"""Fixtures for the bot's operations and plugins: the in-process bot with the operations and plugins services,
and a simulated worker that keeps a heartbeat and answers operations the way `worker.operator` writes them.

The simulated worker is for the bot's side (polling, rendering, pacing of edits); the real worker processes
run the operations themselves in `tests/test_bot_operations_e2e.py`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import select

from backend.dispatch import TaskDispatcher
from backend.operations_service import OperationsService
from backend.plugins_service import PluginsService
from celery_app import keys, presence, report
from celery_app.operations import OperationStatus
from celery_app.presence import WorkerInfo
from common.details import Detail, detail
from database.models import AccountOperation
from tests.support.bot_harness import BotHarness

log = logging.getLogger(__name__)
OPERATIONS_OFFLINE_AFTER = 30.0  # a busy test machine must not make a beating worker look offline


def add_operations(harness: BotHarness, redis_url: str, plugins_dir: str | None = None) -> BotHarness:
    """Give the harness's bot the operations and plugins services (as `bot.main.make_services` does)."""
    accounts = harness.services.accounts
    harness.services.operations = OperationsService(
        accounts.redis, accounts.sessions, TaskDispatcher(redis_url), OPERATIONS_OFFLINE_AFTER, accounts
    )
    harness.services.plugins = PluginsService(accounts.redis, accounts.sessions, plugins_dir, box=lambda: accounts.box)
    return harness


@dataclass
class Answer:
    """How the simulated worker answers one operation: optional steps before the end, then the end."""

    status: OperationStatus = OperationStatus.DONE
    result: dict[str, Any] = field(default_factory=dict)
    error: Detail | None = None  # why it failed, coded as the worker codes it
    delay: float = 0.0  # seconds "running" before the end
    flood_wait: float = 0.0  # seconds of a flood wait shown before it runs (the until is in the hash)


Responder = Callable[[AccountOperation], Answer | None]  # None: leave this one unanswered


class SimulatedWorker:
    """A worker in Redis: registered, beating every 0.3 s with a report of its running accounts, answering
    the operations sent to it (one at a time, in order) with `responder`."""

    def __init__(self, redis: Redis, sessions: Any, name: str, responder: Responder | None = None) -> None:
        self.redis = redis
        self.sessions = sessions
        self.name = name
        self.instance = f"sim-{name}"
        self.running: set[int] = set()
        self.responder = responder
        self.answered: list[AccountOperation] = []
        self._seen: set[int] = set()
        self._stop = threading.Event()
        info = WorkerInfo(name, "10.0.0.1", "host", 4321, "0.1.0", presence.server_time(redis) - 3725, self.instance)
        presence.register(redis, info, OPERATIONS_OFFLINE_AFTER, report=self._report())
        self._beats = threading.Thread(target=self._beat, daemon=True)
        self._beats.start()
        self._answers = threading.Thread(target=self._answer, daemon=True)
        self._answers.start()

    def _report(self) -> str:
        return report.encode([(account_id, "running") for account_id in sorted(self.running)])

    def _beat(self) -> None:
        while not self._stop.wait(0.3):
            presence.beat(self.redis, self.name, self.instance, OPERATIONS_OFFLINE_AFTER, self._report())

    def beat_now(self) -> None:
        presence.beat(self.redis, self.name, self.instance, OPERATIONS_OFFLINE_AFTER, self._report())

    def write(
        self,
        operation: AccountOperation,
        status: OperationStatus,
        result: dict[str, Any] | None = None,
        error: Detail | None = None,
        until: float | None = None,
    ) -> None:
        """What `worker.operator._write` puts into `keys.operation(worker, id)`."""
        self.redis.hset(
            keys.operation(self.name, operation.id),
            mapping={
                "status": status.value,
                "account_id": str(operation.account_id),
                "name": operation.name,
                "worker": self.name,
                "instance": self.instance,
                "result": json.dumps(result or {}, separators=(",", ":")),
                "error": error.text if error is not None else "",
                "code": error.encode() if error is not None else "",
                "until": "" if until is None else f"{until:.3f}",
                "at": f"{time.time():.3f}",
            },
        )

    def pending(self) -> list[AccountOperation]:
        with self.sessions() as session:
            rows = session.scalars(
                select(AccountOperation)
                .where(AccountOperation.worker == self.name, AccountOperation.status == OperationStatus.QUEUED.value)
                .order_by(AccountOperation.id)
            )
            return [row for row in rows if row.id not in self._seen]

    def _answer(self) -> None:
        while not self._stop.wait(0.1):
            if self.responder is None:
                continue
            try:
                waiting = self.pending()
            except Exception:  # the database may be busy a moment; try again
                log.debug("simulated worker %s: could not read its operations", self.name, exc_info=True)
                continue
            for operation in waiting:
                self._seen.add(operation.id)
                answer = self.responder(operation)
                if answer is None:
                    continue
                if answer.flood_wait:
                    until = time.time() + answer.flood_wait
                    self.write(
                        operation,
                        OperationStatus.FLOOD_WAIT,
                        error=detail("flood", seconds=answer.flood_wait),
                        until=until,
                    )
                    if self._stop.wait(answer.flood_wait):
                        return
                self.write(operation, OperationStatus.RUNNING)
                if answer.delay and self._stop.wait(answer.delay):
                    return
                self.write(operation, answer.status, answer.result, answer.error)
                self.answered.append(operation)

    def stop(self) -> None:
        self._stop.set()
        self._beats.join(5)
        self._answers.join(5)


def check_report(verdict: str = "ok", other_sessions: int = 0, spam: str = "free") -> dict[str, Any]:
    """A `check` result as `worker.operations._check` builds it."""
    gone = verdict in ("banned", "unauthorized")
    return {
        "authorized": not gone,
        "deleted": False,
        "banned": verdict == "banned",
        "restricted": verdict == "restricted",
        "restriction": "spam reports" if verdict == "restricted" else None,
        "spam": "limited" if verdict == "limited" else spam,
        "spam_text": "",
        "premium": False,
        "other_sessions": None if gone else other_sessions,
        "verdict": verdict,
    }
