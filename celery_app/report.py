"""What a worker actually runs, as it reports with every heartbeat (`keys.worker_report`).

The report is the level-triggered truth the backend reconciles against: rewritten atomically with each
heartbeat (by the heartbeat script in `celery_app.presence`), it expires with the worker's presence, and it
needs no event to have survived. It names the Redis server it was written on: after a failover, the promoted
replica holds the reports the old primary replicated — up to a heartbeat old, saying "running" for a client the
worker may have stopped since — and they are not read as news until each worker writes its own there.

It lists every account with a runner on the worker, grouped by status:
`{"running": [1, 2], "flood_wait": [7]}` — compact, so a scan reads a thousand of them in one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from redis import Redis

from celery_app import keys


def encode(states: Iterable[tuple[int, str]]) -> str:
    """JSON for the report from (account id, status) pairs."""
    grouped: dict[str, list[int]] = {}
    for account_id, status in states:
        grouped.setdefault(str(status), []).append(int(account_id))
    for ids in grouped.values():
        ids.sort()
    return json.dumps(grouped, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class WorkerReport:
    """One worker's report: Redis server time of its heartbeat, its instance, and account id -> status."""

    at: float
    instance: str
    statuses: dict[int, str] = field(default_factory=dict)
    key: str = ""  # the public key the worker presents ("" from a worker before keys)

    def count(self, status: str) -> int:
        return sum(1 for value in self.statuses.values() if value == status)


def decode(at: str | bytes | None, instance: str | bytes | None, accounts: str | bytes | None) -> WorkerReport | None:
    """A report from the stored fields; None when missing or malformed (treated as "no report")."""
    if at is None or accounts is None:
        return None
    try:
        grouped = json.loads(accounts)
        statuses = {
            int(account_id): str(status)
            for status, ids in grouped.items()
            if isinstance(ids, list)
            for account_id in ids
        }
        when = float(at)
    except (ValueError, TypeError, AttributeError):
        return None
    return WorkerReport(when, instance.decode() if isinstance(instance, bytes) else str(instance or ""), statuses)


def read_reports(redis: Redis, names: list[str]) -> dict[str, WorkerReport]:
    """The current report of each named worker (those that have one), in one round trip. A report written on
    another Redis server than the one answering (a primary that failed over since) is no report: what it says
    may have changed since without a word reaching this server."""
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hmget(keys.worker_report(name), "at", "instance", "accounts", "server", "key")
    pipe.info("server")
    *rows, info = pipe.execute()
    here = str(info.get("run_id", ""))
    reports: dict[str, WorkerReport] = {}
    for name, (at, instance, accounts, server, key) in zip(names, rows, strict=True):
        written_on = server.decode() if isinstance(server, bytes) else (server or "")
        if written_on and here and written_on != here:
            continue
        report = decode(at, instance, accounts)
        if report is not None:
            reports[name] = replace(report, key=(key.decode() if isinstance(key, bytes) else key) or "")
    return reports
