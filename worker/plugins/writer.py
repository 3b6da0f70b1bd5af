"""`PluginWriter`: plugin statuses and `plugin.*` wire events, written to Redis from one thread in batches.

The event loops only enqueue; a status superseded before it was written is not written; every write is
fenced by the account's lease when a holder is given, so a worker that lost an account cannot overwrite what
the new holder reports.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys
from celery_app.events import WireEvent, WireEventKind
from celery_app.plugin_config import PluginStatus

log = logging.getLogger(__name__)

_WRITE = """
local holder = ARGV[1]
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do
  local allowed = true
  if holder ~= '' then
    local lease = redis.call('GET', op['lease'])
    allowed = (not lease) or lease == holder
  end
  if allowed then
    if op['op'] == 'hset' then
      redis.call('HSET', op['key'], op['field'], op['value'])
    elseif op['op'] == 'hdel' then
      redis.call('HDEL', op['key'], op['field'])
    elseif op['op'] == 'del' then
      redis.call('DEL', op['key'])
    elseif op['op'] == 'xadd' then
      redis.call('XADD', op['key'], 'MAXLEN', '~', ARGV[3], '*',
        'kind', op['kind'], 'subject', op['subject'], 'data', op['data'])
    end
  end
end
return #ops
"""


class PluginWriter:
    """Writes plugin statuses and events from one thread, in batches; the loops only enqueue.

    A status superseded before it was written is not written; writes are fenced by the account's lease when
    a holder is given. While Redis is unreachable it retries, keeping the newest status of each plugin and
    the latest MAX_PENDING_EVENTS events.
    """

    BATCH = 500
    MAX_PENDING_EVENTS = 10_000

    def __init__(self, redis: Redis, worker: str, holder: str | None) -> None:
        self.redis = redis
        self.holder = holder or ""
        self.worker = worker
        self._queue: queue.SimpleQueue[tuple[int, dict[str, Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="plugin-writer", daemon=True)
        self._lock = threading.Lock()
        self._started = False
        self._enqueued = 0  # items put so far
        self._written = 0  # every item up to this one is written (or superseded)
        self._pending: dict[Any, dict[str, Any]] = {}  # insertion-ordered; statuses keyed to be superseded
        self._events: collections.deque[Any] = collections.deque()  # keys of the events in _pending, oldest first
        self._dropped = 0

    def put(self, op: dict[str, Any]) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
            self._enqueued += 1
            self._queue.put((self._enqueued, op))

    def status(self, account_id: int, plugin: str, status: PluginStatus) -> None:
        self.put(
            {
                "op": "hset",
                "key": keys.plugin_status(self.worker, account_id),
                "field": plugin,
                "value": status.to_json(),
                "lease": keys.worker_lease(self.worker, account_id),
            }
        )

    def forget(self, account_id: int, plugin: str | None = None) -> None:
        key, lease = keys.plugin_status(self.worker, account_id), keys.worker_lease(self.worker, account_id)
        if plugin is None:
            self.put({"op": "del", "key": key, "lease": lease})
        else:
            self.put({"op": "hdel", "key": key, "field": plugin, "lease": lease})

    def event(self, kind: WireEventKind, account_id: int, data: dict[str, Any]) -> None:
        fields = WireEvent(kind.value, str(account_id), data).fields()
        lease = keys.worker_lease(self.worker, account_id)
        self.put({"op": "xadd", "key": keys.worker_events(self.worker), "lease": lease, **fields})

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far is written (or the timeout passes)."""
        with self._lock:
            target = self._enqueued
        deadline = time.monotonic() + timeout
        while self._written < target:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._started:
            self.flush(timeout)
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.2
        consumed = 0
        stopping = False
        while True:
            if not self._pending:
                self._written = consumed
                if stopping:
                    return
                item = self._queue.get()
                if item is None:
                    return
                consumed = item[0]
                self._add(item[1])
            while True:  # take everything waiting: statuses coalesce, events are capped
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                consumed = item[0]
                self._add(item[1])
            chunk = list(self._pending.items())[: self.BATCH]
            try:
                self.redis.eval(_WRITE, 0, self.holder, _json([op for _, op in chunk]), keys.EVENTS_MAXLEN)
            except RedisError as error:
                log.warning("could not write %d plugin statuses/events (%s); retrying", len(self._pending), error)
                if stopping:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            for key, _ in chunk:
                del self._pending[key]
                if key[0] == "event":
                    self._events.popleft()
            if self._dropped:
                log.warning("%d plugin events were dropped while Redis was out of reach", self._dropped)
                self._dropped = 0

    def _add(self, op: dict[str, Any]) -> None:
        if op["op"] == "hset":
            key: Any = ("status", op["key"], op["field"])
            self._pending.pop(key, None)  # the newer status goes last, after anything enqueued between them
        elif op["op"] in ("del", "hdel"):
            for stale in [k for k in self._pending if k[0] == "status" and k[1] == op["key"]]:
                if op["op"] == "del" or stale[2] == op["field"]:
                    del self._pending[stale]
            key = ("forget", object())
        else:
            if len(self._events) >= self.MAX_PENDING_EVENTS:
                del self._pending[self._events.popleft()]
                self._dropped += 1
            key = ("event", object())
            self._events.append(key)
        self._pending[key] = op


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
