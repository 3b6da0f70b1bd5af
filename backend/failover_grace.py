"""After a Redis failover, heartbeats lost with the old primary make no live worker offline.

Redis replicates asynchronously: the heartbeats the old primary had not sent are gone once Sentinel promotes a
replica, and no worker could beat while there was no primary. Judged by what the new primary holds, a worker
that was beating all along can look silent past WORKER_OFFLINE_AFTER, and the backend would record it offline
and its accounts lost (then correct both a heartbeat later). So when the scan finds another Redis server
answering (its run id changed: a failover, or a restart) or Redis did not answer since the last scan, the
backend judges no worker offline for one WORKER_OFFLINE_AFTER (Redis time of the server answering now): by
then every live worker has beaten on it. Meanwhile a worker recorded online and silent reads as online but not
believable: its accounts are unknown, not lost, and nothing is corrected, started or stopped for them. A worker
recorded offline stays offline; one really gone is judged when the grace is over.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from backend.observed import WorkerSight
from celery_app.presence import HeartbeatSnapshot, Liveness, liveness
from database.models import WorkerStatus

log = logging.getLogger(__name__)

ONLINE = WorkerStatus.ONLINE.value


class FailoverGrace:
    def __init__(self, offline_after: float) -> None:
        self.offline_after = offline_after
        self._primary = ""  # the run id of the Redis server the last scan read
        self._redis_lost = False  # Redis did not answer since the last scan
        self._until = 0.0  # Redis time until which no worker recorded online is judged offline

    def redis_lost(self) -> None:
        """Redis did not answer: what was written meanwhile may be lost (a failover); the next scan graces."""
        self._redis_lost = True

    def note(self, snapshot: HeartbeatSnapshot) -> None:
        """Called by each scan with its heartbeats (`with_primary`): a new server, or an outage, opens the grace."""
        changed = bool(self._primary) and snapshot.primary != self._primary
        if changed or self._redis_lost:
            self._until = snapshot.now + self.offline_after
            log.info(
                "Redis %s: no worker is judged offline for a stale heartbeat for %gs",
                "primary changed (failover or restart)" if changed else "answers again",
                self.offline_after,
            )
        self._primary, self._redis_lost = snapshot.primary, False

    def active(self, now: float) -> bool:
        return self._redis_lost or now < self._until

    def judged(self, recorded: str, beat: float | None, now: float) -> Liveness:
        """A worker's liveness from its heartbeat; one recorded online stays online through the grace."""
        status = liveness(beat, now, self.offline_after)
        if status is Liveness.OFFLINE and recorded == ONLINE and self.active(now):
            return Liveness.ONLINE
        return status

    def sight(self, seen: WorkerSight, recorded: str | None, now: float) -> WorkerSight:
        """Through the grace, a worker recorded online and silent reads as online but not believable."""
        if seen.online or recorded != ONLINE or not self.active(now):
            return seen
        return replace(seen, online=True)
