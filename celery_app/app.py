"""The Celery app both sides use: JSON only, late acks, prefetch 1, expiring results, bounded tasks."""

from __future__ import annotations

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
        worker_enable_remote_control=False,
        worker_send_task_events=False,
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
    return app
