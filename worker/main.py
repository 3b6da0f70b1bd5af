"""Runs one worker: wait for Redis, claim the name, heartbeat, and consume `worker.<name>` with Celery.

Celery runs in this process with a thread pool, so task bodies reach the account manager directly. Each
heartbeat also reports what runs here and renews the leases of the accounts running here; if Redis stays
silent for half a lease, the fence stops every client before any lease can expire, and the worker resumes
them by itself once it can take their leases again. At start it resumes the accounts in its spec registry.
SIGTERM or SIGINT start Celery's warm shutdown: the worker announces itself offline as that begins, then
stops its clients.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from celery_app import keys, leases, presence, rejections
from celery_app.app import create_celery_app
from celery_app.contract import queue_for
from celery_app.presence import WorkerInfo
from celery_app.rejections import Rejection
from common.crypto import SecretBox
from common.redis_target import describe_redis_error, open_redis
from common.sealing import KeyFileError, load_or_create
from config import EXIT_CONFIG, WorkerSettings, mask_url
from version import __version__
from worker import poison
from worker.account_manager import AccountManager
from worker.address import own_address
from worker.operator import OperationExecutor
from worker.pacing import ConnectPacer, jittered
from worker.presence import NameInUse, PresenceKeeper
from worker.proxy_check import ProxyChecker, ProxyWatcher, in_use
from worker.runtime import WorkerRuntime
from worker.secrets import WorkerSecrets
from worker.tasks import register_tasks
from worker.telegram import load_factory

log = logging.getLogger(__name__)
TASK_THREADS = 8
EXIT_NAME_IN_USE = 73  # sysexits EX_CANTCREAT: the name cannot be had; the unit does not restart on it


def connect_redis(url: str) -> Redis:
    return open_redis(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15, decode_responses=True)


def wait_for_redis(redis: Redis, url: str) -> None:
    delay = 0.5
    while True:
        try:
            redis.ping()
            return
        except RedisError as error:
            pause = jittered(delay)
            log.warning(
                "Redis at %s unreachable (%s); retrying in %.1fs",
                mask_url(url),
                describe_redis_error(error, url),
                pause,
            )
            time.sleep(pause)
            delay = min(delay * 2, 10)


def run_worker(settings: WorkerSettings) -> int:
    try:
        identity = load_or_create(Path(settings.key_file))  # this worker's key pair: made once, kept 0600
    except KeyFileError as error:
        log.error("cannot use the worker's key file: %s (WORKER_KEY_FILE names another)", error)
        return EXIT_CONFIG
    log.info("worker key %s (%s)", identity.fingerprint, settings.key_file)
    redis = connect_redis(settings.redis_url)
    wait_for_redis(redis, settings.redis_url)
    info = WorkerInfo(
        name=settings.worker_name,
        address=settings.worker_address or own_address(redis),
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        started_at=time.time(),
        instance=uuid.uuid4().hex,
        max_accounts=settings.max_accounts,
        public_key=identity.public_key,
    )
    lease_ttl = settings.timing.offline_after
    pacer = ConnectPacer(settings.connects_per_second)  # every client's connects, the manager's and Telethon's
    manager = AccountManager(
        load_factory(settings.client_factory, settings.mtproto, pacer),
        redis,
        settings.worker_name,
        info.instance,
        settings.worker_threads,
        lease_ttl=lease_ttl,
        pacer=pacer,
        max_accounts=settings.max_accounts,
    )

    def control_key() -> str | None:
        found = redis.get(keys.CONTROL_PUBLIC_KEY)
        return found.decode() if isinstance(found, bytes) else found

    box = WorkerSecrets(identity, SecretBox(settings.secret_key) if settings.secret_key else None, control_key)
    manager.plugins = plugin_host(redis, settings, manager.holder, box)

    def renew_leases_and_resume() -> None:
        lost = leases.renew(redis, manager.held_accounts(), manager.holder, lease_ttl)
        if lost:
            manager.lease_lost(lost)
        manager.resume_parked()

    keeper = PresenceKeeper(
        redis,
        info,
        settings.timing.heartbeat_interval,
        settings.timing.offline_after,
        on_name_taken=lambda: os.kill(os.getpid(), signal.SIGTERM),
        on_beat=renew_leases_and_resume,
        fence_after=presence.fence_after(lease_ttl),
        on_fence=manager.fence,
        report=manager.report_json,
        on_registered=manager.reassert,
    )
    from celery import signals

    def _announce_offline(**_kwargs: object) -> None:
        keeper.go_offline()

    signals.worker_shutting_down.connect(_announce_offline, weak=False)
    app = create_celery_app(settings.redis_url, worker=settings.worker_name)

    def count_rejection(reason: Rejection) -> None:
        rejections.count(redis, settings.worker_name, reason)

    consumer_cls = poison.install(app, settings.redis_url, queue_for(settings.worker_name), count_rejection)

    operator = OperationExecutor(manager, box, info.instance, settings.operations)
    checker = ProxyChecker(redis, settings.worker_name, settings.proxy_check_seconds, settings.mtproto)
    runtime = WorkerRuntime(
        info=info, threads=settings.worker_threads, manager=manager, box=box, operator=operator, proxies=checker
    )

    def rotate_key() -> str:
        """`workers rotate-key`: a new key pair, presented where the control plane reads it."""
        pair = box.rotate(Path(settings.key_file))
        keeper.info = replace(keeper.info, public_key=pair.public_key)  # a re-registration presents it too
        runtime.info = keeper.info
        presence.present_key(redis, settings.worker_name, pair.public_key)
        log.info("worker key rotated: now %s", pair.fingerprint)
        return pair.public_key

    runtime.rotate = rotate_key
    register_tasks(app, runtime)
    celery_worker = app.Worker(
        hostname=f"{settings.worker_name}@{info.host}",
        queues=[queue_for(settings.worker_name)],
        pool="threads",
        consumer_cls=consumer_cls,
        concurrency=TASK_THREADS,
        # Celery's event heartbeat lets Flower and `celery events` see the worker; gossip and mingle (every
        # worker listening to every other) stay off: the fleet's own presence does that job at scale.
        without_gossip=True,
        without_mingle=True,
        loglevel=settings.log_level,
        quiet=True,
    )

    # Until Celery installs its own handlers, a stop signal still announces the worker offline.
    def _stop_before_celery(signum: int, _frame: object) -> None:
        keeper.go_offline()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_celery)
    try:
        keeper.register()
    except NameInUse as error:
        print(f"error: {error}", file=sys.stderr)
        manager.shutdown()
        return EXIT_NAME_IN_USE
    manager.open()
    runtime.resume_from_registry()
    keeper.beat_once()  # publish what runs here now, not one heartbeat later
    keeper.start()
    follow_plugin_changes(manager, settings.timing.heartbeat_interval)
    ProxyWatcher(checker, lambda: in_use(manager.running_specs())).start()
    log.info(
        "worker %r consuming %s (Redis %s)",
        settings.worker_name,
        queue_for(settings.worker_name),
        mask_url(settings.redis_url),
    )
    try:
        celery_worker.start()
    finally:
        operator.close()
        keeper.go_offline()
        manager.shutdown()
        manager.plugins.close()
    return int(celery_worker.exitcode or 0)


def follow_plugin_changes(manager: AccountManager, interval: float) -> None:
    """Apply plugin configuration changes to the running accounts, checked every `interval` seconds on a thread
    of its own: the heartbeat's round trips (which the fence times) stay as few as they were."""

    def run() -> None:
        while True:
            time.sleep(interval)
            try:
                manager.sync_plugins()
            except RedisError as error:
                log.debug("plugin configuration not checked (%s)", error)
            except Exception:  # the next check tries again
                log.exception("plugin configuration could not be applied")

    threading.Thread(target=run, name="plugins-sync", daemon=True).start()


def plugin_host(redis: Redis, settings: WorkerSettings, holder: str, secrets: WorkerSecrets) -> Any:
    """The plugins this worker can load (`worker.plugins`): found once at start, loaded per account; their
    secret configuration opened with this worker's key."""
    from common.plugin_catalogue import discover
    from worker.plugins.host import PluginHost

    catalogue = discover(settings.plugins_dir)
    usable = sorted(name for name, info in catalogue.items() if info.error is None)
    log.info("plugins available: %s", ", ".join(usable) or "none")
    return PluginHost(
        redis,
        settings.worker_name,
        catalogue,
        block_threshold=settings.plugin_block_seconds,
        holder=holder,
        opener=secrets.decrypt,
    )
