"""Runs one worker: wait for Redis, claim the name, heartbeat, and consume `worker.<name>` with Celery.

Celery runs in this process with a thread pool, so task bodies reach the account manager directly. SIGTERM
or SIGINT start Celery's warm shutdown; the worker announces itself offline as that begins.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid

from redis import Redis
from redis.exceptions import RedisError

from celery_app.app import create_celery_app
from celery_app.contract import queue_for
from celery_app.presence import WorkerInfo
from config import WorkerSettings, mask_url
from version import __version__
from worker.presence import NameInUse, PresenceKeeper
from worker.runtime import WorkerRuntime
from worker.tasks import register_tasks

log = logging.getLogger(__name__)
TASK_THREADS = 8
EXIT_NAME_IN_USE = 1


def connect_redis(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15, decode_responses=True
    )


def wait_for_redis(redis: Redis, url: str) -> None:
    delay = 0.5
    while True:
        try:
            redis.ping()
            return
        except RedisError as error:
            log.warning("Redis at %s unreachable (%s); retrying in %.0fs", mask_url(url), error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)


def run_worker(settings: WorkerSettings) -> int:
    redis = connect_redis(settings.redis_url)
    wait_for_redis(redis, settings.redis_url)
    info = WorkerInfo(
        name=settings.worker_name,
        address=settings.worker_address,
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        started_at=time.time(),
        instance=uuid.uuid4().hex,
    )
    keeper = PresenceKeeper(
        redis,
        info,
        settings.timing.heartbeat_interval,
        settings.timing.offline_after,
        on_name_taken=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )
    try:
        keeper.register()
    except NameInUse as error:
        log.error("%s", error)
        return EXIT_NAME_IN_USE
    keeper.start()

    from celery import signals

    def _announce_offline(**_kwargs: object) -> None:
        keeper.go_offline()

    signals.worker_shutting_down.connect(_announce_offline, weak=False)
    app = create_celery_app(settings.redis_url)
    runtime = WorkerRuntime(info=info, threads=settings.worker_threads)
    register_tasks(app, runtime)
    celery_worker = app.Worker(
        hostname=f"{settings.worker_name}@{info.host}",
        queues=[queue_for(settings.worker_name)],
        pool="threads",
        concurrency=TASK_THREADS,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=settings.log_level,
        quiet=True,
    )
    log.info(
        "worker %r consuming %s (Redis %s)",
        settings.worker_name,
        queue_for(settings.worker_name),
        mask_url(settings.redis_url),
    )
    try:
        celery_worker.start()
    finally:
        keeper.go_offline()
    return int(celery_worker.exitcode or 0)
