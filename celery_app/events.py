"""Wire events on Redis Streams: each worker appends to its own (`keys.worker_events`), which only its Redis login
can write; the backend's consumer group applies them in order, and refuses what a worker says of another.

An event is `kind`, `subject` (a worker name or an account id) and a small JSON `data` object; its time is
the stream entry id (Redis server time, ms). Events never carry secrets.

Writers cap the stream (`keys.EVENTS_MAXLEN`) only so it stays bounded when no backend reads it for long;
in normal operation the backend removes what it has applied (`trim_applied`) and the cap is never reached.
Events are the fast path: if the cap ever drops unread ones (`unread_were_dropped`), the scan catches up.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from redis import Redis
from redis.client import Pipeline

from celery_app import keys


class WireEventKind(enum.StrEnum):
    WORKER_ONLINE = "worker.online"
    WORKER_OFFLINE = "worker.offline"  # data: {reason, code} (English, and `common.details` JSON)
    ACCOUNT_STATUS = "account.status"
    PLUGIN_EVENT = "plugin.event"  # subject: account id; data: {plugin, kind, text, alert}
    PLUGIN_ERROR = "plugin.error"  # subject: account id; data: {plugin, error, code?, count, blocked}
    # subject: operation id; data: {account_id, name, status, error, code, until}
    OPERATION_STATUS = "operation.status"


@dataclass(frozen=True)
class WireEvent:
    kind: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    stream_id: str = ""
    stream: str = keys.EVENTS_STREAM  # where it was read: a worker's own stream says who wrote it

    @property
    def at(self) -> float:
        """Redis server time of the event, from its stream id."""
        millis = self.stream_id.split("-", 1)[0]
        return int(millis) / 1000 if millis.isdigit() else 0.0

    def fields(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "data": json.dumps(self.data, separators=(",", ":"))}

    @classmethod
    def from_fields(cls, stream_id: str, raw: dict[Any, Any]) -> WireEvent | None:
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        try:
            data = json.loads(decoded.get("data") or "{}")
        except ValueError:
            return None
        kind, subject = decoded.get("kind"), decoded.get("subject")
        if not kind or not subject or not isinstance(data, dict):
            return None
        return cls(kind, subject, data, stream_id)


def emit(
    target: Redis | Pipeline,
    kind: WireEventKind,
    subject: str,
    data: dict[str, Any] | None = None,
    stream: str = keys.EVENTS_STREAM,
) -> None:
    """Append an event (on a client, or queued on a pipeline for the caller to execute) to `stream`: a worker's
    own (`keys.worker_events`)."""
    event = WireEvent(kind.value, subject, data or {})
    target.xadd(stream, event.fields(), maxlen=keys.EVENTS_MAXLEN, approximate=True)


def streams_of(workers: Iterable[str]) -> list[str]:
    """The streams the backend reads: the shared one (workers from before) and each worker's own."""
    return [keys.EVENTS_STREAM, *(keys.worker_events(name) for name in sorted(set(workers)))]


def writer_of(stream: str) -> str | None:
    """The worker whose own stream this is (None for the shared one)."""
    head, tail = f"{keys.PREFIX}:worker:", ":events"
    if stream.startswith(head) and stream.endswith(tail) and len(stream) > len(head) + len(tail):
        return stream[len(head) : -len(tail)]
    return None


def ensure_group(redis: Redis, streams: Iterable[str] = (keys.EVENTS_STREAM,)) -> None:
    """Create the backend's consumer group on each stream from its start (so nothing emitted earlier is missed)."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xgroup_create(stream, keys.EVENTS_GROUP, id="0", mkstream=True)
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
            raise reply


def read_group(
    redis: Redis,
    block_ms: int | None,
    count: int = 500,
    pending: bool = False,
    streams: Iterable[str] = (keys.EVENTS_STREAM,),
) -> list[WireEvent]:
    """Events for the backend's consumer: new ones (`pending=False`) or those read but not yet acknowledged; each
    says the stream it came from (`WireEvent.stream`)."""
    from redis.exceptions import ResponseError

    wanted = dict.fromkeys(streams, "0" if pending else ">")
    try:
        response = redis.xreadgroup(
            keys.EVENTS_GROUP, keys.EVENTS_CONSUMER, wanted, count=count, block=None if pending else block_ms
        )
    except ResponseError as error:
        if "NOGROUP" not in str(error):
            raise
        ensure_group(redis, wanted)  # a stream removed with its worker, or lost with Redis's data: again
        response = redis.xreadgroup(keys.EVENTS_GROUP, keys.EVENTS_CONSUMER, wanted, count=count)
    events: list[WireEvent] = []
    for stream, entries in response or []:
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        for stream_id, raw in entries:
            sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
            event = WireEvent.from_fields(sid, raw or {})
            found = event if event is not None else WireEvent("invalid", "-", {}, sid)
            events.append(replace(found, stream=name))
    return events


def acknowledge(redis: Redis, events: list[WireEvent]) -> None:
    by_stream: dict[str, list[str]] = {}
    for event in events:
        by_stream.setdefault(event.stream, []).append(event.stream_id)
    for stream, ids in by_stream.items():
        redis.xack(stream, keys.EVENTS_GROUP, *ids)


def _stream_id(value: object) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    millis, _, sequence = text.partition("-")
    try:
        return int(millis), int(sequence or 0)
    except ValueError:
        return 0, 0


def _our_group(redis: Redis, stream: str) -> dict[str, Any] | None:
    from redis.exceptions import ResponseError

    try:
        groups = redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return None
    for group in groups:
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == keys.EVENTS_GROUP:
            return dict(group)
    return None


def trim_applied(redis: Redis, streams: Iterable[str] = (keys.EVENTS_STREAM,)) -> None:
    """Drop the entries the backend has read and acknowledged (nothing newer, nothing still pending)."""
    for stream in streams:
        group = _our_group(redis, stream)
        if group is None:
            continue
        bound = _stream_id(group.get("last-delivered-id", "0-0"))
        if int(group.get("pending") or 0):
            summary = redis.xpending(stream, keys.EVENTS_GROUP)
            if summary.get("min"):
                bound = min(bound, _stream_id(summary["min"]))
        if bound > (0, 0):
            redis.xtrim(stream, minid=f"{bound[0]}-{bound[1]}", approximate=True)


def unread_were_dropped(redis: Redis, streams: Iterable[str] = (keys.EVENTS_STREAM,)) -> bool:
    """True when the cap removed entries the backend had not read yet from any stream (it was down for long).

    Of all entries ever added, those no longer in the stream were either read (and trimmed by the backend)
    or dropped unread: more gone than read means some were dropped.
    """
    for stream in streams:
        group = _our_group(redis, stream)
        if group is None:
            continue
        try:
            info = redis.xinfo_stream(stream)
            added, length = int(info["entries-added"]), int(info["length"])
        except (KeyError, TypeError, ValueError):  # a Redis older than 7.0 does not say
            continue
        if added - length > int(group.get("entries-read") or 0):
            return True
    return False
