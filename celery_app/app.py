"""The Celery app both sides use: JSON only, late acks, prefetch 1, expiring results, bounded tasks.

Remote control and task events are on, so Celery's own tools see the fleet: `celery -A celery_app inspect ping`
(the app comes from `app_from_environment`, reading REDIS_URL), `celery -A celery_app events`, and Flower. Task
arguments are shown there (and in logs) only as `argsrepr`, with secrets masked (`contract.masked_repr`).
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from celery import Celery

from celery_app import keys
from common.redis_target import celery_connection

RESULT_EXPIRES_SECONDS = 3600
TASK_SOFT_TIME_LIMIT = 240
TASK_TIME_LIMIT = 300


def unacked_keys(worker: str) -> dict[str, str]:
    """Where a worker's Kombu keeps the messages it has taken and not yet acknowledged: in the worker's own keys,
    not the shared `unacked` hash. Each worker restores only its own messages (to its own queue), and a worker
    logged in as itself (`backend.worker_logins`) is never asked to push another worker's message back onto a
    queue its login may not reach (Redis refuses it, and Kombu would stop the worker with it)."""
    own = keys.worker_info(worker)
    return {
        "unacked_key": f"{own}:unacked",
        "unacked_index_key": f"{own}:unacked_index",
        "unacked_mutex_key": f"{own}:unacked_mutex",
    }


def create_celery_app(redis_url: str, worker: str | None = None) -> Celery:
    """The app on `redis_url`: one server's URL, or a Sentinel target (common.redis_target), in which case the
    broker and the result backend find the primary through the sentinels and follow a failover. `worker`: the
    name of the worker that consumes with it (its unacknowledged messages are kept in its own keys)."""
    # Sentinels that stop answering must not hang a call: they get the data nodes' connect timeout.
    connection = celery_connection(redis_url, socket_timeout=5, socket_connect_timeout=5)
    app = Celery("fleet", broker=connection.broker_url, backend=connection.backend_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=RESULT_EXPIRES_SECONDS,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        task_time_limit=TASK_TIME_LIMIT,
        # Nothing consumes a default queue: every task is sent by name to one worker's queue.
        task_default_queue="fleet.unrouted",
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_enable_remote_control=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        # Replies to `inspect`/`control` broadcasts expire instead of piling up in Redis.
        control_queue_ttl=300.0,
        control_queue_expires=60.0,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": 3600,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            **connection.broker_options,
            **(unacked_keys(worker) if worker else {}),
        },
        result_backend_transport_options={
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "retry_policy": {"timeout": 5.0},
            **connection.backend_options,
        },
        redis_socket_timeout=10,
        redis_socket_connect_timeout=5,
        redis_retry_on_timeout=True,
    )
    if connection.tls is not None:
        # Sentinel over TLS: a sentinel:// URL cannot say TLS, so the settings say it (verified unless REDIS_URL's
        # ssl_cert_reqs said otherwise), for the broker and the result backend alike.
        app.conf.update(broker_use_ssl=connection.tls, redis_backend_use_ssl=connection.tls)
    elif urlsplit(redis_url).scheme == "rediss" and "ssl_cert_reqs" not in urlsplit(redis_url).query:
        # TLS, and the server's certificate verified (against the system's CAs, or SSL_CERT_FILE): Kombu's
        # default for a bare rediss:// URL is not to verify, and Celery's result backend refuses to guess.
        verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        app.conf.update(broker_use_ssl=verified, redis_backend_use_ssl=verified)
    return app


def app_from_environment() -> Celery:
    """The fleet's app for Celery's command line and Flower, pointed at REDIS_URL - or, with REDIS_SENTINELS,
    at the primary the sentinels name (from the environment or .env; a bad value stops it with one line)."""
    from config import ConfigError, load_env_file, read_redis_target

    load_env_file()
    try:
        return create_celery_app(read_redis_target())
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
