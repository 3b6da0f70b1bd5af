"""Which wire events the backend believes (what a worker says of itself, and of the accounts given to it), and
a plugin's event as a line of the fleet's history.

Each worker writes its events to its own stream (`keys.worker_events`), which no other worker's Redis login can
write (`backend.worker_logins`), so the stream an event was read from names its writer. An event about another
worker, or about an account the fleet has not given to the writer, is refused (logged, counted). An account's
status and an operation's progress are read where their worker keeps them anyway (`AccountSync.apply_states`,
`backend.operation_views.read_live`); a plugin's event is taken as it is said, so it is checked here. Events in
the shared stream come from workers from before streams of their own, which share one login: as before.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from celery_app.events import WireEvent, WireEventKind, writer_of
from common.details import Detail, detail, free
from common.redaction import safe_detail
from database.accounts import accounts_workers
from database.events import NewEvent, account_subject
from database.models import FleetEventKind, epoch_to_datetime

log = logging.getLogger(__name__)

_ABOUT_ITSELF = frozenset({WireEventKind.WORKER_ONLINE, WireEventKind.WORKER_OFFLINE})
_ABOUT_AN_ACCOUNT = frozenset({WireEventKind.PLUGIN_EVENT, WireEventKind.PLUGIN_ERROR})


def believable(sessions: sessionmaker[Session], batch: list[WireEvent]) -> list[WireEvent]:
    """The events of `batch` whose writers may say them, in order."""
    asked = sorted(
        {int(e.subject) for e in batch if e.kind in _ABOUT_AN_ACCOUNT and e.subject.isdigit() and writer_of(e.stream)}
    )
    given: dict[int, str] = {}
    if asked:
        with sessions() as session:
            given = accounts_workers(session, asked)
    kept = [event for event in batch if _may_say(event, given)]
    if len(kept) < len(batch):
        log.warning("refused %d event(s) a worker wrote about another worker or its accounts", len(batch) - len(kept))
    return kept


def _may_say(event: WireEvent, given: dict[int, str]) -> bool:
    writer = writer_of(event.stream)
    if writer is None:
        return True
    if event.kind in _ABOUT_ITSELF:
        return event.subject == writer
    if event.kind == WireEventKind.ACCOUNT_STATUS:
        return event.data.get("worker") == writer
    if event.kind in _ABOUT_AN_ACCOUNT:
        return event.subject.isdigit() and given.get(int(event.subject)) == writer
    return event.kind == WireEventKind.OPERATION_STATUS  # read where the worker it was sent to keeps it


def plugin_event(event: WireEvent) -> NewEvent | None:
    """A plugin's `emit` (an alert if it asked for one) or a failure it had, as a line of the fleet's history."""
    if not event.subject.isdigit():
        return None
    data = event.data
    plugin = str(data.get("plugin", "?"))[:64]
    subject = account_subject(int(event.subject))
    at = epoch_to_datetime(event.at) if event.at else None
    if event.kind == WireEventKind.PLUGIN_EVENT:
        kind = FleetEventKind.PLUGIN_ALERT if data.get("alert") else FleetEventKind.PLUGIN_EVENT
        said = detail(
            "plugin_event",
            plugin=plugin,
            kind=str(data.get("kind", "event"))[:40],
            text=safe_detail(str(data.get("text", "")), 1000),
        )
        return NewEvent(kind, subject, said, actor=f"plugin:{plugin}", at=at)
    error = safe_detail(str(data.get("error", "")), 300)
    cause = Detail.decode(str(data.get("code") or "")) or free(error)  # the plugin's own words: as they are
    said = detail("plugin_blocked_loop" if data.get("blocked") else "plugin_failed", plugin=plugin, cause=cause)
    return NewEvent(FleetEventKind.PLUGIN_ERROR, subject, said, actor=f"plugin:{plugin}", at=at)
