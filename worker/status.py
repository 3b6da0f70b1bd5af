"""Reports account statuses to Redis and the event stream, batched, from one thread.

Loop threads enqueue states without blocking; this thread writes them in one script call per batch. The
script writes a status, in the worker's own keys (`keys.account_state`), only while this instance holds the
account's lease or no instance of the worker does, so an instance that was cut off cannot overwrite what the
one that took over says; it stamps each with Redis server time (`rt`), which readers compare with the time of
the worker's heartbeat report. Readers read the status where the account is assigned.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys, leases
from celery_app.account_state import AccountState
from worker.pacing import jittered

log = logging.getLogger(__name__)

_WRITE = """
local holder = ARGV[1]
local stream = ARGV[2]
local maxlen = tonumber(ARGV[3])
local updates = cjson.decode(ARGV[4])
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local written = 0
for _, update in ipairs(updates) do
  local lease = redis.call('GET', update['lease'])
  if (not lease) or lease == holder then
    update['fields']['rt'] = now
    local flat = {}
    for k, v in pairs(update['fields']) do
      table.insert(flat, k)
      table.insert(flat, v)
    end
    redis.call('HSET', update['key'], unpack(flat))
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
      'kind', 'account.status', 'subject', update['fields']['account_id'], 'data', cjson.encode(update['fields']))
    written = written + 1
  end
end
return written
"""

BATCH = 500


class StatusReporter:
    """Each report gets a number; `flush` waits for the reports made before it, not for a quiet queue (with
    hundreds of accounts reporting, the queue is never quiet: a stop waited its whole timeout for that)."""

    def __init__(self, redis: Redis, holder: str) -> None:
        self.redis = redis
        self.holder = holder
        self.worker = leases.worker_of(holder)
        self._queue: queue.Queue[tuple[int, AccountState] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="status-reporter", daemon=True)
        self._progress = threading.Condition()
        self._reported = 0  # the number of the newest report
        self._written = 0  # every report up to this number is written

    def start(self) -> None:
        self._thread.start()

    def report(self, state: AccountState) -> None:
        with self._progress:
            self._reported += 1
            self._queue.put((self._reported, state))  # in number order: the writer takes them in order

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything reported so far is written (or timeout)."""
        with self._progress:
            target = self._reported
            return self._progress.wait_for(lambda: self._written >= target, timeout)

    def _mark_written(self, upto: int) -> None:
        with self._progress:
            self._written = max(self._written, upto)
            self._progress.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.ident is None:  # never started (the worker gave up before opening)
            return
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: dict[int, AccountState] = {}
        order: list[int] = []
        taken = 0  # the number of the newest report taken into `pending`
        backoff = 0.2
        while True:
            if not pending:
                item = self._queue.get()
                if item is None:
                    return
                taken = item[0]
                self._add(pending, order, item[1])
            while len(pending) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    if self._write(pending, order):
                        self._mark_written(taken)
                    return
                taken = item[0]
                self._add(pending, order, item[1])
            if self._write(pending, order):
                pending.clear()
                order.clear()
                self._mark_written(taken)
                backoff = 0.2
            else:
                time.sleep(jittered(backoff))
                backoff = min(backoff * 2, 5.0)

    @staticmethod
    def _add(pending: dict[int, AccountState], order: list[int], state: AccountState) -> None:
        if state.account_id in pending:
            order.remove(state.account_id)  # only the newest state of an account matters
        pending[state.account_id] = state
        order.append(state.account_id)

    def _write(self, pending: dict[int, AccountState], order: list[int]) -> bool:
        updates = [
            {
                "key": keys.account_state(self.worker, account_id),
                "lease": keys.worker_lease(self.worker, account_id),
                "fields": pending[account_id].to_fields(),
            }
            for account_id in order
        ]
        try:
            pipe = self.redis.pipeline(transaction=False)
            stream = keys.worker_events(self.worker)
            pipe.eval(_WRITE, 0, self.holder, stream, keys.EVENTS_MAXLEN, json.dumps(updates))
            if leases.replicas_online(self.redis):
                # On the write's own connection: once a replica has it, a failover cannot undo it (a "stopping"
                # lost with the old primary would read "running" on the new one while nothing runs).
                pipe.execute_command("WAIT", 1, int(leases.ACK_TIMEOUT_SECONDS * 1000))
            pipe.execute()
            return True
        except RedisError as error:
            log.warning("could not report %d account statuses (%s); retrying", len(updates), error)
            return False
