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
- the guarded consumer also checks, before a task message becomes a request for the pool, that its arguments
  bind to the task's signature: a message with an unexpected keyword, an extra or a missing positional is
  dropped there (`Rejection.BAD_ARGUMENTS`) instead of dying in the task body with a logged traceback.
Each rejection is logged (reason, queue) and counted per reason in `keys.worker_rejected(name)`; where the
message's headers name a task id, its result is recorded as a failure (`TaskRejected`, or `NotRegistered` for a
task this worker does not know), so a caller waiting on it learns at once instead of by timeout.
"""

from __future__ import annotations

import binascii
import functools
import inspect
import logging
import ssl
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import InvalidTaskError, NotRegistered
from celery.worker.consumer import Consumer
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as redis_transport
from kombu.transport.virtual.base import Empty
from redis.exceptions import ConnectionError as BrokerConnectionError

from celery_app.rejections import DESCRIPTIONS, MAX_MESSAGE_BYTES, Rejection, TaskRejected
from common.redaction import safe_detail
from common.redis_target import parse_target, uses_tls

log = logging.getLogger(__name__)

OnReject = Callable[[Rejection], None]
Strategy = Callable[..., Any]

TRANSPORT_ALIAS = "fleet-redis"
# Celery reconnects to a lost broker after 2, 4, 6 ... 30 s. Behind Sentinel the new primary is usually there
# within seconds of a failover: the worker tries again sooner (after 0.5, 1, 1.5 ... 3 s), so its queue is
# consumed again soon after the sentinels name the new primary, not up to 6 s later.
SENTINEL_BROKER_RETRY = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 3.0}
SENTINEL_SCHEME = "sentinel"  # the scheme of Kombu's Sentinel transport in broker URLs (common.redis_target)
# Celery's ids are UUIDs; a longer "id" is not one a caller waits on, and is not written to the result backend.
MAX_TASK_ID_LENGTH = 255


def install(app: Celery, broker_url: str, queue: str, on_reject: OnReject) -> type[Consumer]:
    """Make `app` consume through the guarded transport; returns the consumer class to start the worker with.

    `broker_url` is the worker's Redis target: with Sentinel, the guarded transport is Kombu's Sentinel transport.
    Its broker URL lists one `sentinel://` URL per sentinel, and after a connection error Kombu switches to the
    next and takes the transport from that URL's scheme: in this process `sentinel` names the guarded one too,
    or the first failover would put the stock transport back.
    """
    guard = Guard(app, queue, on_reject)
    sentinel = parse_target(broker_url) is not None
    guarded = guarded_transport(guard, sentinel=sentinel)
    # Registered by name (kombu resolves a callable alias) so logs show "fleet-redis://", not a class repr.
    TRANSPORT_ALIASES[TRANSPORT_ALIAS] = lambda: guarded
    if sentinel:
        TRANSPORT_ALIASES[SENTINEL_SCHEME] = lambda: guarded
    app.conf.broker_transport = TRANSPORT_ALIAS
    if uses_tls(broker_url) and not app.conf.broker_use_ssl:
        # Named by alias, the transport no longer tells kombu the URL asked for TLS: ask for it, verified.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return guarded_consumer(guard, retry=SENTINEL_BROKER_RETRY if sentinel else None)


class Guard:
    """What every rejection does: log the reason and the queue (never the content), count it, answer a caller."""

    def __init__(self, app: Celery, queue: str, on_reject: OnReject) -> None:
        self.app = app
        self.queue = queue
        self.on_reject = on_reject

    def reject(self, reason: Rejection, headers: object = None, error: Exception | None = None) -> None:
        """Report a dropped message; `headers` (if readable) may name the task id a caller waits on."""
        log.warning("rejected a message on %s: %s; dropped without running it", self.queue, DESCRIPTIONS[reason])
        try:
            self.on_reject(reason)
        except Exception:  # counting must never be what stops the consumer
            log.warning("could not count a rejected message", exc_info=True)
        task_id = waiting_task_id(headers)
        if task_id is None:
            return
        try:
            self.app.backend.mark_as_failure(task_id, error or TaskRejected(reason.value))
        except Exception:  # nor must answering; the caller then learns by its timeout, as before
            log.warning("could not record the rejected message's failure", exc_info=True)


def waiting_task_id(headers: object) -> str | None:
    """The task id a caller may be waiting on, from a message's headers; None if there is none to answer."""
    if not isinstance(headers, dict) or headers.get("ignore_result") is True:
        return None
    task_id = headers.get("id")
    if isinstance(task_id, str) and 0 < len(task_id) <= MAX_TASK_ID_LENGTH:
        return task_id
    return None


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


class BadArguments(InvalidTaskError):
    """A task message whose arguments do not fit its task; carries no part of them."""


def check_arguments(task: Task, message: Any, body: Any) -> None:
    """Raise BadArguments unless the message's args and kwargs bind to the signature of `task`.

    Celery checks arguments only on the sender's side: `apply_async` calls `task.__header__` (a function with the
    task's signature and an empty body, from `head_from_fun`) when `task.typing` is on, and `send_task` - how the
    fleet sends - checks nothing. Its worker calls the task as it comes, so a mismatch is a TypeError inside the
    task body. The same checker is called here, in the consumer, before the request is made. A task class without
    `__header__` (not made by `app.task`) is checked with `inspect.signature` of its `run`.
    """
    if not getattr(task, "typing", True):
        return  # the task opted out of argument checks (`@app.task(typing=False)`)
    # Protocol 2 leaves `body` to the pool, but Celery's strategy decodes the payload here anyway (kombu caches it).
    payload = message.payload if body is None else body
    if isinstance(payload, dict) and (body is not None or "args" in payload):  # protocol 1, or a hybrid message
        args, kwargs, embed = payload.get("args", ()), payload.get("kwargs", {}), None
    elif isinstance(payload, list | tuple) and len(payload) == 3:
        args, kwargs, embed = payload
    else:
        raise BadArguments("the body is not [args, kwargs, embed]")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict) or not isinstance(embed, dict | None):
        raise BadArguments("args, kwargs or embed of the wrong type")
    header = getattr(task, "__header__", None)
    try:
        if header is not None:
            header(*args, **kwargs)
        else:
            inspect.signature(task.run).bind(*args, **kwargs)
    except TypeError:
        raise BadArguments("the arguments do not bind to the task's signature") from None


def checking_arguments(task: Task, strategy: Strategy) -> Strategy:
    """Celery's strategy for `task` (its per-message handler in the consumer), behind `check_arguments`.

    Raised there, BadArguments (an InvalidTaskError) reaches the consumer's `on_invalid_task`, as Celery routes it.
    """

    def handle(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        check_arguments(task, message, body)
        return strategy(message, body, *args, **kwargs)

    return handle


def guarded_transport(guard: Guard, sentinel: bool = False) -> type[redis_transport.Transport]:
    """Kombu's Redis transport (its Sentinel transport, a subclass, if `sentinel`), dropping queue items that
    would stop the consumer (see the module doc)."""
    base_channel = redis_transport.SentinelChannel if sentinel else redis_transport.Channel
    base_transport = redis_transport.SentinelTransport if sentinel else redis_transport.Transport

    class GuardedChannel(base_channel):  # type: ignore[valid-type,misc]
        # Kombu pops the item, then decodes it as UTF-8 JSON; a ValueError escaping the read comes from there
        # (the delivery below never lets one out), and the item is already off the list.
        def _brpop_read(self, **options: Any) -> bool:
            try:
                return super()._brpop_read(**options)
            except ValueError:
                guard.reject(Rejection.NOT_JSON)
                return True

        def _get(self, queue_name: str) -> Any:
            try:
                return super()._get(queue_name)
            except ValueError:
                guard.reject(Rejection.NOT_JSON)
                raise Empty() from None

        # The broker lost with a task in flight (acks late): Celery collects the connection, whose transport
        # is let go even though restoring the unacknowledged message failed (the broker is gone), then closes it
        # again; Kombu then builds a new pool from the released transport and dies on its missing URL - an
        # AttributeError no handler expects, so the worker stopped ("Unrecoverable error"). Said as what it is,
        # the broker out of reach, it is ignored like the first attempt; the message stays unacknowledged in
        # Redis and is restored by the next consumer (Kombu's visibility timeout).
        def _connparams(self, asynchronous: bool = False) -> Any:
            if self.connection.client is None:
                raise BrokerConnectionError("the broker connection was closed")
            return super()._connparams(asynchronous=asynchronous)

    class GuardedTransport(base_transport):  # type: ignore[valid-type,misc]
        Channel = GuardedChannel

        # Kombu counts KeyError among the Redis transport's connection errors; here it is the message's fault.
        broker_errors = tuple(error for error in redis_transport.Transport.connection_errors if error is not KeyError)

        def _deliver(self, message: Any, queue_name: str) -> None:
            problem = envelope_problem(message)
            if problem is not None:
                guard.reject(problem, message.get("headers") if isinstance(message, dict) else None)
                return
            try:
                super()._deliver(message, queue_name)
            except self.broker_errors:
                raise
            except Exception:  # noqa: BLE001 - its text may quote the message; the reason is logged instead
                # The consumer failed on a well-formed envelope (e.g. a task message missing its id). Take it
                # off the unacknowledged set too, or it would be restored to the queue at the next restart.
                self._forget_unacked(message["properties"]["delivery_tag"])
                guard.reject(Rejection.UNACCEPTABLE, message.get("headers"))

        def _forget_unacked(self, delivery_tag: str) -> None:
            for channel in self.channels:
                channel.qos.ack(delivery_tag)  # a no-op where the tag is unknown

    return GuardedTransport


def guarded_consumer(guard: Guard, retry: dict[str, float] | None = None) -> type[Consumer]:
    """Celery's consumer checking task arguments, its bad-message handlers logging the reason, not the content;
    `retry`: the pace of its reconnections to the broker (Kombu's `interval_*`), if not Celery's own."""

    class GuardedConsumer(Consumer):
        def ensure_connected(self, conn: Any) -> Any:
            if retry:
                conn.ensure_connection = functools.partial(conn.ensure_connection, **retry)
            return super().ensure_connected(conn)

        def update_strategies(self) -> None:
            super().update_strategies()
            for name, task in self.app.tasks.items():
                self.strategies[name] = checking_arguments(task, self.strategies[name])

        def on_decode_error(self, message: Any, exc: Exception) -> None:
            message.ack()
            guard.reject(Rejection.UNDECODABLE_BODY, message.headers)

        def on_unknown_message(self, body: Any, message: Any) -> None:
            message.reject_log_error(log, self.connection_errors)
            guard.reject(Rejection.NOT_A_TASK, message.headers)

        def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
            message.reject_log_error(log, self.connection_errors)
            # Celery's own answer for a task it does not know (a sender may be a newer backend), by its name.
            headers = message.headers if isinstance(message.headers, dict) else {}
            unknown = NotRegistered(safe_detail(str(headers.get("task")), 80))
            guard.reject(Rejection.UNKNOWN_TASK, headers, unknown)

        def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
            message.reject_log_error(log, self.connection_errors)
            reason = Rejection.BAD_ARGUMENTS if isinstance(exc, BadArguments) else Rejection.INVALID_TASK
            guard.reject(reason, message.headers)

    return GuardedConsumer
