"""The Celery app both sides use: JSON only, late acks, prefetch 1, expiring results, bounded tasks.

Remote control and task events are on, so Celery's own tools see the fleet: `celery -A celery_app inspect ping`
(the app comes from `app_from_environment`, reading REDIS_URL), `celery -A celery_app events`, and Flower. Task
arguments are shown there (and in logs) only as `argsrepr`, with secrets masked (`contract.masked_repr`).
"""

from __future__ import annotations

import os
import ssl
from urllib.parse import urlsplit

from celery import Celery

RESULT_EXPIRES_SECONDS = 3600
TASK_SOFT_TIME_LIMIT = 240
TASK_TIME_LIMIT = 300


def create_celery_app(redis_url: str) -> Celery:
    app = Celery("fleet", broker=redis_url, backend=redis_url, set_as_current=False)
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
        broker_transport_options={"visibility_timeout": 3600, "socket_timeout": 10, "socket_connect_timeout": 5},
        result_backend_transport_options={
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "retry_policy": {"timeout": 5.0},
        },
        redis_socket_timeout=10,
        redis_socket_connect_timeout=5,
        redis_retry_on_timeout=True,
    )
    if urlsplit(redis_url).scheme == "rediss" and "ssl_cert_reqs" not in urlsplit(redis_url).query:
        # TLS, and the server's certificate verified (against the system's CAs, or SSL_CERT_FILE): Kombu's
        # default for a bare rediss:// URL is not to verify, and Celery's result backend refuses to guess.
        verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        app.conf.update(broker_use_ssl=verified, redis_backend_use_ssl=verified)
    return app


def app_from_environment() -> Celery:
    """The fleet's app for Celery's command line and Flower, pointed at REDIS_URL (from the environment or .env)."""
    from config import DEFAULT_REDIS_URL, load_env_file

    load_env_file()
    return create_celery_app(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
