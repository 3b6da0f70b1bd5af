"""Keeps this worker registered and heartbeating in Redis, and says goodbye at a clean stop.

Every heartbeat also rewrites the report of the accounts this worker runs (`report()`), then calls
`on_beat` (lease renewal, resuming parked accounts). If Redis restarts or drops, heartbeats fail quietly
(one warning), then the first heartbeat that finds the registration gone registers again, announces the
worker online and calls `on_registered` (the worker re-asserts what Redis forgot), with no restart. If
another process has taken the name meanwhile, this worker is told to stop (`on_name_taken`).

The fence: a worker whose leases have not been renewed for `fence_after` (half a lease) stops every client
and parks it (`on_fence`), then resumes once renewals go through again. Its clock (`last_contact`) is the
moment of the last heartbeat whose renewal (`on_beat`) also went through: a renewal that failed, or that no
replica acknowledged (`leases.NotReplicated`: a failover could undo it), does not count. So the fence falls
half a lease after the last renewal the promoted replica of a failover would have, before its leases lapse.
One exception keeps the fence and what the CLI shows in step: a heartbeat that went through when Redis then
went out of reach before its renewal still counts (up to half a lease after the last renewal), because the CLI
judges the worker's silence by that heartbeat and the worker can no longer report that it stopped its clients.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal

from redis import Redis
from redis.exceptions import RedisError

from celery_app import events, keys, presence
from celery_app.leases import NotReplicated
from celery_app.presence import BeatResult, WorkerInfo
from common.details import Detail, detail

log = logging.getLogger(__name__)
Renewal = Literal["renewed", "unreplicated", "unreachable"]


class NameInUse(RuntimeError):
    """Another live worker already owns this name."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PresenceKeeper:
    def __init__(
        self,
        redis: Redis,
        info: WorkerInfo,
        heartbeat_interval: float,
        offline_after: float,
        on_name_taken: Callable[[], None] | None = None,
        on_beat: Callable[[], None] | None = None,
        fence_after: float | None = None,
        on_fence: Callable[[Detail], None] | None = None,
        report: Callable[[], str] | None = None,
        on_registered: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self.info = info
        self.heartbeat_interval = heartbeat_interval
        self.offline_after = offline_after
        self.on_name_taken = on_name_taken
        self.on_beat = on_beat
        self.fence_after = fence_after
        self.on_fence = on_fence
        self.report = report or (lambda: presence.EMPTY_REPORT)
        self.on_registered = on_registered
        self._beat_lock = threading.Lock()
        self._redis_down = False
        self._unreplicated = False
        self._fenced = False
        self.last_contact = time.monotonic()  # the last heartbeat Redis confirmed whose lease renewal went through
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offline_lock = threading.Lock()
        self._gone_offline = False

    # --- registration ------------------------------------------------------------------------------------

    def register(self) -> None:
        """Claim the name, or take it over from a dead process on this host; raise NameInUse otherwise."""
        result = presence.register(self.redis, self.info, self.offline_after, "", *self._snapshot())
        if not result.registered:
            holder = presence.read_infos(self.redis, [self.info.name]).get(self.info.name)
            if holder is not None and holder.host == self.info.host and not pid_alive(holder.pid):
                log.info("taking over name %r from dead process %d on this host", self.info.name, holder.pid)
                result = presence.register(
                    self.redis,
                    self.info,
                    self.offline_after,
                    result.holder_instance or "",
                    *self._snapshot(),
                )
            if not result.registered:
                where = f" (host {holder.host}, pid {holder.pid})" if holder else ""
                raise NameInUse(
                    f"worker name {self.info.name!r} is already in use by a running worker{where}; "
                    "choose another WORKER_NAME or stop that worker first"
                )
        self.last_contact = time.monotonic()
        events.emit(
            self.redis,
            events.WireEventKind.WORKER_ONLINE,
            self.info.name,
            self.info.to_dict(),
            keys.worker_events(self.info.name),
        )
        log.info("registered as worker %r (instance %s)", self.info.name, self.info.instance)

    def _snapshot(self) -> tuple[str, float]:
        """The report of what runs here, stamped with a Redis time read just before it was taken: a status
        written after the snapshot is then stamped later than the report, so views never prefer the older."""
        at = presence.server_time(self.redis)
        return self.report(), at

    # --- heartbeats --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        if self.fence_after is not None and self.on_fence is not None:
            threading.Thread(target=self._watch_fence, name="fence", daemon=True).start()

    def _watch_fence(self) -> None:
        """Independent of the heartbeat (which may hang on a dead link): fence once Redis is silent too long."""
        assert self.fence_after is not None and self.on_fence is not None
        while not self._stop.wait(min(self.heartbeat_interval, self.fence_after) / 4):
            silent = time.monotonic() - self.last_contact
            if silent > self.fence_after and not self._fenced:
                self._fenced = True
                self.on_fence(detail("no_redis", seconds=silent))
            elif silent <= self.fence_after:
                self._fenced = False

    def _run(self) -> None:
        """Beat every `heartbeat_interval` from the start of the last beat, not from its end: a beat that takes a
        while (the report and the renewal of ten thousand leases) does not make the next one late."""
        due = time.monotonic() + self.heartbeat_interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.heartbeat_interval, time.monotonic())
            if not self.beat_once():
                return

    def beat_once(self) -> bool:
        """One heartbeat with the current report, then the callbacks; False when this worker must stop."""
        with self._beat_lock:
            if self._stop.is_set():
                return False
            try:
                result = presence.beat(
                    self.redis, self.info.name, self.info.instance, self.offline_after, *self._snapshot()
                )
            except RedisError as error:
                if not self._redis_down:
                    log.warning(
                        "heartbeat failed, Redis unreachable (%s); retrying every %gs", error, self.heartbeat_interval
                    )
                    self._redis_down = True
                return True
            previous, self.last_contact = self.last_contact, time.monotonic()
            if self._redis_down:
                log.info("Redis reachable again")
                self._redis_down = False
            if result is BeatResult.TAKEN:
                log.critical("another process now owns worker name %r; stopping", self.info.name)
                if self.on_name_taken is not None:
                    self.on_name_taken()
                return False
            if result is BeatResult.REREGISTER:
                log.warning("registration was lost (Redis restarted?); registering again")
                try:
                    self.register()
                    if self.on_registered is not None:
                        self.on_registered()
                except (RedisError, NameInUse) as error:
                    log.error("could not register again: %s", error)
            renewal = self._renew()
            if renewal == "unreplicated":
                self.last_contact = previous  # counted meanwhile, for at most the renewal's wait: withdrawn
            elif renewal == "unreachable" and self.fence_after is not None:
                # Redis went out of reach between the heartbeat and its renewal: the heartbeat now in Redis is
                # what the CLI judges this worker's silence by, and the fence must not come before that (the
                # worker cannot say it stopped its clients). Still never later than half a lease after the last
                # renewal that went through (`previous` came before it), before any lease can lapse.
                self.last_contact = min(self.last_contact, previous + self.fence_after)
            return True

    def _renew(self) -> Renewal:
        """Run `on_beat` (the lease renewal); anything but "renewed" and the fence clock does not count this beat
        as a renewal."""
        if self.on_beat is None:
            return "renewed"
        try:
            self.on_beat()
        except NotReplicated as error:
            if not self._unreplicated:
                log.warning("lease renewal not acknowledged by a replica (%s); it does not count for the fence", error)
                self._unreplicated = True
            return "unreplicated"
        except RedisError as error:
            log.warning("lease renewal failed (%s)", error)
            return "unreachable"
        if self._unreplicated:
            log.info("lease renewals acknowledged by a replica again")
            self._unreplicated = False
        return "renewed"

    def go_offline(self) -> None:
        """Stop heartbeating, release the name and announce offline (idempotent, safe from a signal handler)."""
        with self._offline_lock:
            if self._gone_offline:
                return
            self._gone_offline = True
        self._stop.set()
        try:
            if presence.unregister(self.redis, self.info.name, self.info.instance):
                events.emit(
                    self.redis,
                    events.WireEventKind.WORKER_OFFLINE,
                    self.info.name,
                    {"reason": "stopped", "code": detail("stopped").encode()},
                    keys.worker_events(self.info.name),
                )
            log.info("worker %r is offline", self.info.name)
        except RedisError as error:
            log.warning("could not announce offline (Redis unreachable: %s); it will time out", error)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
