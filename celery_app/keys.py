"""The Redis key layout shared by workers, the backend, the CLI and the bot."""

from __future__ import annotations

PREFIX = "fleet"

# Sorted set: worker name -> Redis server time of its last heartbeat. Only an index of names to look at: any
# worker may write it, so readers take the time from the worker's own report (`presence.read_heartbeats`).
HEARTBEATS = f"{PREFIX}:heartbeats"
# Stream of wire events (worker online/offline, account status) of workers from before each wrote its own
# (`worker_events`); read by the backend's consumer group like those. Writers cap every event stream at
# EVENTS_MAXLEN only as a memory bound for when no backend reads it for a long time; the backend trims what it has
# applied. Events are only the fast path: the scan needs none of them.
EVENTS_STREAM = f"{PREFIX}:events"
EVENTS_GROUP = "backend"
EVENTS_CONSUMER = "reconciler"
EVENTS_MAXLEN = 100_000
# A known value encrypted with the control plane's SECRET_KEY: a worker host checks its own key against it.
SECRET_CANARY = f"{PREFIX}:secret_canary"
# The control plane's public key (common.sealing): what a worker seals a value it sends back to (a new session).
CONTROL_PUBLIC_KEY = f"{PREFIX}:control:public_key"
# Hash: alert kind -> how many the admin bot sent (the backend serves it as a Prometheus counter).
ALERTS_SENT = f"{PREFIX}:metrics:alerts_sent"
# The Redis ACL user of a worker's own login is this prefix and the worker's name (`backend.worker_logins`).
WORKER_LOGIN_PREFIX = "fleet-worker-"
# Held (with expiry) by the one backend that acts; others stand by.
BACKEND_LEADER = f"{PREFIX}:backend:leader"


def worker_info(name: str) -> str:
    """Hash: what a worker reported when it registered (address, host, pid, version, started_at, instance)."""
    return f"{PREFIX}:worker:{name}"


def worker_owner(name: str) -> str:
    """String with expiry: the instance id of the process that owns this worker name while it is online."""
    return f"{PREFIX}:worker:{name}:owner"


def account_state(worker: str, account_id: int) -> str:
    """Hash: the live status a worker reported for an account it runs (in the worker's own keys, which no
    other worker's Redis login can write: `backend.worker_logins`)."""
    return f"{PREFIX}:worker:{worker}:account:{account_id}"


def worker_lease(worker: str, account_id: int) -> str:
    """String with expiry: the instance of this worker allowed to run the account (`celery_app.leases`)."""
    return f"{PREFIX}:worker:{worker}:lease:{account_id}"


def account_assignment(account_id: int) -> str:
    """Hash written by the control plane only: `worker` -> the worker the account is given to; `was:<name>` ->
    a worker it was given to before, kept until that worker's lease is gone (`celery_app.leases`)."""
    return f"{PREFIX}:account:{account_id}:worker"


# Set: account ids whose assignment still names earlier workers (`was:`); the backend sweeps it every scan.
ASSIGNMENTS_MOVING = f"{PREFIX}:assignments:moving"


def worker_report(name: str) -> str:
    """Hash with expiry, rewritten atomically with every heartbeat: the accounts the worker actually runs.

    Fields: `at` (Redis server time of the heartbeat), `instance`, `accounts` (JSON: status -> account ids).
    """
    return f"{PREFIX}:worker:{name}:report"


def worker_specs(name: str) -> str:
    """Hash: account id -> the (encrypted) spec of each account the worker should be running.

    The worker keeps it so that after a crash or a restart it resumes its accounts by itself; the control
    plane removes an entry when it stops or moves the account.
    """
    return f"{PREFIX}:worker:{name}:specs"


def worker_events(name: str) -> str:
    """Stream: the wire events a worker writes (`celery_app.events`), in its own keys: what comes from it is
    known to come from it, so the backend refuses what it says of others."""
    return f"{PREFIX}:worker:{name}:events"


def worker_rejected(name: str) -> str:
    """Hash: reason -> how many messages the worker dropped from its queue as malformed or foreign."""
    return f"{PREFIX}:worker:{name}:rejected"


def operation(worker: str, operation_id: int) -> str:
    """Hash with expiry, in the worker's own keys: where an account operation stands, as the worker it was sent
    to writes it.

    Fields: `status` (`celery_app.operations.OperationStatus`), `worker`, `instance`, `result` (JSON),
    `error`, `until` (flood wait end), `at`. The CLI and the backend read it; the database keeps the outcome.
    """
    return f"{PREFIX}:worker:{worker}:op:{operation_id}"


OPERATION_TTL_SECONDS = 7 * 24 * 3600

# Counter: bumped at every change of any account's plugin configuration; workers re-read on a change.
PLUGINS_VERSION = f"{PREFIX}:plugins:version"


def account_plugins(account_id: int) -> str:
    """Hash: plugin name -> JSON config of each plugin enabled for the account (the database's mirror)."""
    return f"{PREFIX}:account:{account_id}:plugins"


def plugin_status(worker: str, account_id: int) -> str:
    """Hash: plugin name -> JSON {state, errors, last_error, at} as the worker running the account reports it."""
    return f"{PREFIX}:worker:{worker}:account:{account_id}:plugins"


def plugin_store(plugin: str, account_id: int) -> str:
    """Hash: a plugin's own key-value store for one account (`context.kv`)."""
    return f"{PREFIX}:plugin:{plugin}:{account_id}:kv"
