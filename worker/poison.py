"""A worker's queue cannot stop it: what is not a fleet task message is dropped, logged and counted.

Anyone who can write to Redis can push anything onto `worker.<name>`. Left alone, Celery stops the worker
("Unrecoverable error") on an item that is not JSON, not a message envelope, or whose body is not base64 -
and the same item, still queued, stops every restart too. Celery's own handlers for undecodable, unknown or
invalid task messages survive them, but log the message's content.

Kombu's Redis transport and Celery's consumer have no hook for either, so both are subclassed here at the
narrowest point, and only in the worker (the senders keep the stock transport):
- `guarded_transport` checks each item popped from the queue before kombu builds a message from it. What
  fails is already off the list, so dropping it acknowledges it: it never comes back.
- `guarded_consumer` replaces Celery's four "bad message" handlers with ones that log the reason and the
  queue, never the content, and count it.
Each rejection is logged (reason, queue) and counted per reason in `keys.worker_rejected(name)`.
"""

from __future__ import annotations

import binascii
import logging
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.exceptions import NotRegistered
from celery.worker.consumer import Consumer
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as redis_transport
from kombu.transport.virtual.base import Empty

from celery_app.rejections import DESCRIPTIONS, MAX_MESSAGE_BYTES, Rejection
from common.redaction import safe_detail

log = logging.getLogger(__name__)

OnReject = Callable[[Rejection], None]


TRANSPORT_ALIAS = "fleet-redis"


def install(app: Celery, broker_url: str, queue: str, on_reject: OnReject) -> type[Consumer]:
    """Make `app` consume through the guarded transport; returns the consumer class to start the worker with."""
    guarded = guarded_transport(queue, on_reject)
    # Registered by name (kombu resolves a callable alias) so logs show "fleet-redis://", not a class repr.
    TRANSPORT_ALIASES[TRANSPORT_ALIAS] = lambda: guarded
    app.conf.broker_transport = TRANSPORT_ALIAS
    if urlsplit(broker_url).scheme == "rediss" and not app.conf.broker_use_ssl:
        # Named by alias, the transport no longer tells kombu the URL asked for TLS: ask for it, verified.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return guarded_consumer(queue, on_reject)


def report_rejection(on_reject: OnReject, reason: Rejection, queue: str) -> None:
    log.warning("rejected a message on %s: %s; dropped without running it", queue, DESCRIPTIONS[reason])
    try:
        on_reject(reason)
    except Exception:  # counting must never be what stops the consumer
        log.warning("could not count a rejected message", exc_info=True)


def envelope_problem(message: Any) -> Rejection | None:
    """Why a decoded queue item cannot become a kombu message, or None if it can."""
    if not isinstance(message, dict):
        return Rejection.NOT_AN_ENVELOPE
    properties = message.get("properties")
    body = message.get("body")
    headers = message.get("headers")
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        return Rejection.NOT_AN_ENVELOPE
    delivery_info = properties.get("delivery_info")
    if not isinstance(delivery_info, dict) or not all(
        isinstance(delivery_info.get(key), str) for key in ("exchange", "routing_key")
    ):
        return Rejection.NOT_AN_ENVELOPE
    if not isinstance(headers, dict | None) or not isinstance(body, str | None):
        return Rejection.NOT_AN_ENVELOPE
    if body and len(body) > MAX_MESSAGE_BYTES:
        return Rejection.OVERSIZED
    if body and properties.get("body_encoding") == "base64":
        try:
            binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
        except (ValueError, binascii.Error):
            return Rejection.BAD_BODY_ENCODING
    return None


def guarded_transport(queue: str, on_reject: OnReject) -> type[redis_transport.Transport]:
    """Kombu's Redis transport, dropping queue items that would stop the consumer (see the module doc)."""

    class GuardedChannel(redis_transport.Channel):
        # Kombu pops the item, then decodes it as UTF-8 JSON; a ValueError escaping the read comes from there
        # (the delivery below never lets one out), and the item is already off the list.
        def _brpop_read(self, **options: Any) -> bool:
            try:
                return super()._brpop_read(**options)
            except ValueError:
                report_rejection(on_reject, Rejection.NOT_JSON, queue)
                return True

        def _get(self, queue_name: str) -> Any:
            try:
                return super()._get(queue_name)
            except ValueError:
                report_rejection(on_reject, Rejection.NOT_JSON, queue)
                raise Empty() from None

    class GuardedTransport(redis_transport.Transport):
        Channel = GuardedChannel

        # Kombu counts KeyError among the Redis transport's connection errors; here it is the message's fault.
        broker_errors = tuple(error for error in redis_transport.Transport.connection_errors if error is not KeyError)

        def _deliver(self, message: Any, queue_name: str) -> None:
            problem = envelope_problem(message)
            if problem is not None:
                report_rejection(on_reject, problem, queue)
                return
            try:
                super()._deliver(message, queue_name)
            except self.broker_errors:
                raise
            except Exception:  # noqa: BLE001 - its text may quote the message; the reason is logged instead
                # The consumer failed on a well-formed envelope (e.g. a task message missing its id). Take it
                # off the unacknowledged set too, or it would be restored to the queue at the next restart.
                report_rejection(on_reject, Rejection.UNACCEPTABLE, queue)
                self._forget_unacked(message["properties"]["delivery_tag"])

        def _forget_unacked(self, delivery_tag: str) -> None:
            for channel in self.channels:
                channel.qos.ack(delivery_tag)  # a no-op where the tag is unknown

    return GuardedTransport


def guarded_consumer(queue: str, on_reject: OnReject) -> type[Consumer]:
    """Celery's consumer with its bad-message handlers logging the reason instead of the content."""

    class GuardedConsumer(Consumer):
        def on_decode_error(self, message: Any, exc: Exception) -> None:
            report_rejection(on_reject, Rejection.UNDECODABLE_BODY, queue)
            message.ack()

        def on_unknown_message(self, body: Any, message: Any) -> None:
            report_rejection(on_reject, Rejection.NOT_A_TASK, queue)
            message.reject_log_error(log, self.connection_errors)

        def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
            report_rejection(on_reject, Rejection.UNKNOWN_TASK, queue)
            message.reject_log_error(log, self.connection_errors)
            # A sender waiting for the result (say, a newer backend) learns at once instead of timing out.
            headers = message.headers if isinstance(message.headers, dict) else {}
            task_id, name = headers.get("id"), headers.get("task")
            if isinstance(task_id, str) and isinstance(name, str):
                try:
                    self.app.backend.mark_as_failure(task_id, NotRegistered(safe_detail(name, 80)))
                except Exception:
                    log.warning("could not record the unknown task's failure", exc_info=True)

        def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
            report_rejection(on_reject, Rejection.INVALID_TASK, queue)
            message.reject_log_error(log, self.connection_errors)

    return GuardedConsumer
