"""Plugins: the operator's own code running inside each account's Telegram client.

A plugin is a Python module (or package) with:

    NAME = "greeter"                   # optional; default: the module's (or entry point's) name
    DESCRIPTION = "Says hello back"    # one line, shown by `plugins list`
    CONFIG_SCHEMA = {...}              # JSON Schema of its per-account configuration; default {"type": "object"}

    def validate(config) -> list[str]: # optional: checks a schema cannot express; [] when the config is fine
        ...

    def setup(client, context):        # sync or async; runs each time the plugin loads for an account
        @client.on(events.NewMessage(incoming=True))
        async def handler(event): ...
        context.create_task(poll())    # background work: cancelled when the plugin unloads
        return teardown                # optional: a function or coroutine function run on unload

`client` is a `PluginClient`: the account's Telethon client without the fleet's secrets (session, API id and
hash, private internals) and without control of the connection (connect, disconnect, log_out, sign_in...).
`context` is a `PluginContext`: `account_id`, `plugin`, `config` (validated; the schema's top-level
`default`s filled in), `log` (logger `fleet.plugin.<name>`), `kv` (a small async key-value store in Redis,
scoped to the plugin and the account, that survives restarts and moves), `emit(kind, text, alert=False)` (an
event for the control plane: the bot and the CLI show it, an alert goes to the admins), `create_task(coro)`
and `now()` (the clock, epoch seconds; tests fix it).

Discovery (`discover`): the shipped package `fleet_plugins`, the entry-point group `fleet.plugins` of installed
distributions, and every module or package in PLUGINS_DIR (files starting with `_` or `.` are skipped: put
helpers there); on a name clash the later source wins, with a warning. A plugin that cannot be imported, has
no `setup` or declares a schema that is not valid JSON Schema is listed with its error (logged once) and
cannot be enabled; the others are unaffected. `validate_config` checks a configuration against the schema
(`jsonschema_rs`) and the module's `validate`.

Isolation (`PluginHost`): each handler call, `setup`, teardown and `context.create_task` task runs in a task
named `plugin:<name>:<account>`. What a handler or task raises is caught, counted, logged (once per distinct
error, then at most once a minute), reported as a `plugin.error` wire event (the first, then at most one a
minute per plugin and account) and shown in its status (`failing`, with the last error); the account and the
other plugins carry on; `telethon.events.StopPropagation` works as in Telethon. A `LoopWatchdog` per event
loop notices the loop stalled longer than PLUGIN_BLOCK_SECONDS and names the plugin whose task was running
(status `blocked`, a `plugin.error` event with `blocked: true`, once per stall). This is a guard rail, not a
sandbox: plugins run inside the worker's process, so install only code you trust.

Threads: `attach`, `apply` and `detach` run on the account's event loop. Statuses and events reach Redis
through one write-behind thread, and `kv` calls run in the loop's executor, so no bookkeeping blocks a loop.
Statuses and events are written only while this worker holds the account's lease (or nobody does).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import inspect
import json
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from telethon import events

from celery_app import keys
from celery_app.events import WireEvent, WireEventKind
from celery_app.plugin_config import PluginState, PluginStatus
from common.details import Detail, detail, free
from common.plugin_catalogue import (
    MAX_ERROR,
    PluginInfo,
    describe,
    validate_config,
    with_defaults,
)
from common.redaction import safe_detail

log = logging.getLogger(__name__)

TASK_PREFIX = "plugin:"

SETUP_TIMEOUT = 30.0  # setup() and a teardown must finish within this
UNLOAD_TIMEOUT = 5.0  # cancelled tasks get this long to finish
ERROR_EVENT_INTERVAL = 60.0  # at most one plugin.error event a minute per plugin and account
ERROR_LOG_INTERVAL = 60.0  # a repeated error is logged at most once a minute
EMITS_PER_MINUTE = 60  # context.emit beyond this is dropped (and said so in the log)
MAX_EMIT_TEXT = 1000
MAX_KIND = 64
MAX_KV_KEY = 256

# Telethon attributes a plugin may not reach through its client: the fleet's secrets, and the connection
# and login, which belong to the account's runner.
SECRETS = frozenset({"session", "api_id", "api_hash"})
LIFECYCLE = frozenset(
    {"connect", "disconnect", "log_out", "start", "sign_in", "sign_up", "send_code_request", "qr_login", "edit_2fa"}
)


def task_name(plugin: str, account_id: int) -> str:
    return f"{TASK_PREFIX}{plugin}:{account_id}"


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function (or one returning an awaitable) and return its result."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


# --- Redis, off the loops ---------------------------------------------------------------------------------

_WRITE = """
local holder = ARGV[1]
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do
  local allowed = true
  if holder ~= '' then
    local lease = redis.call('GET', op['lease'])
    allowed = (not lease) or lease == holder
  end
  if allowed then
    if op['op'] == 'hset' then
      redis.call('HSET', op['key'], op['field'], op['value'])
    elseif op['op'] == 'hdel' then
      redis.call('HDEL', op['key'], op['field'])
    elseif op['op'] == 'del' then
      redis.call('DEL', op['key'])
    elseif op['op'] == 'xadd' then
      redis.call('XADD', op['key'], 'MAXLEN', '~', ARGV[3], '*',
        'kind', op['kind'], 'subject', op['subject'], 'data', op['data'])
    end
  end
end
return #ops
"""


class _Writer:
    """Writes plugin statuses and events from one thread, in batches; the loops only enqueue.

    A status superseded before it was written is not written; writes are fenced by the account's lease when
    a holder is given. While Redis is unreachable it retries, keeping the newest status of each plugin and
    the latest MAX_PENDING_EVENTS events.
    """

    BATCH = 500
    MAX_PENDING_EVENTS = 10_000

    def __init__(self, redis: Redis, holder: str | None) -> None:
        self.redis = redis
        self.holder = holder or ""
        self._queue: queue.SimpleQueue[tuple[int, dict[str, Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="plugin-writer", daemon=True)
        self._lock = threading.Lock()
        self._started = False
        self._enqueued = 0  # items put so far
        self._written = 0  # every item up to this one is written (or superseded)
        self._pending: dict[Any, dict[str, Any]] = {}  # insertion-ordered; statuses keyed to be superseded
        self._events: collections.deque[Any] = collections.deque()  # keys of the events in _pending, oldest first
        self._dropped = 0

    def put(self, op: dict[str, Any]) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
            self._enqueued += 1
            self._queue.put((self._enqueued, op))

    def status(self, account_id: int, plugin: str, status: PluginStatus) -> None:
        self.put(
            {
                "op": "hset",
                "key": keys.plugin_status(account_id),
                "field": plugin,
                "value": status.to_json(),
                "lease": keys.account_lease(account_id),
            }
        )

    def forget(self, account_id: int, plugin: str | None = None) -> None:
        key, lease = keys.plugin_status(account_id), keys.account_lease(account_id)
        if plugin is None:
            self.put({"op": "del", "key": key, "lease": lease})
        else:
            self.put({"op": "hdel", "key": key, "field": plugin, "lease": lease})

    def event(self, kind: WireEventKind, account_id: int, data: dict[str, Any]) -> None:
        fields = WireEvent(kind.value, str(account_id), data).fields()
        self.put({"op": "xadd", "key": keys.EVENTS_STREAM, "lease": keys.account_lease(account_id), **fields})

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far is written (or the timeout passes)."""
        with self._lock:
            target = self._enqueued
        deadline = time.monotonic() + timeout
        while self._written < target:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._started:
            self.flush(timeout)
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.2
        consumed = 0
        stopping = False
        while True:
            if not self._pending:
                self._written = consumed
                if stopping:
                    return
                item = self._queue.get()
                if item is None:
                    return
                consumed = item[0]
                self._add(item[1])
            while True:  # take everything waiting: statuses coalesce, events are capped
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                consumed = item[0]
                self._add(item[1])
            chunk = list(self._pending.items())[: self.BATCH]
            try:
                self.redis.eval(_WRITE, 0, self.holder, _json([op for _, op in chunk]), keys.EVENTS_MAXLEN)
            except RedisError as error:
                log.warning("could not write %d plugin statuses/events (%s); retrying", len(self._pending), error)
                if stopping:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            for key, _ in chunk:
                del self._pending[key]
                if key[0] == "event":
                    self._events.popleft()
            if self._dropped:
                log.warning("%d plugin events were dropped while Redis was out of reach", self._dropped)
                self._dropped = 0

    def _add(self, op: dict[str, Any]) -> None:
        if op["op"] == "hset":
            key: Any = ("status", op["key"], op["field"])
            self._pending.pop(key, None)  # the newer status goes last, after anything enqueued between them
        elif op["op"] in ("del", "hdel"):
            for stale in [k for k in self._pending if k[0] == "status" and k[1] == op["key"]]:
                if op["op"] == "del" or stale[2] == op["field"]:
                    del self._pending[stale]
            key = ("forget", object())
        else:
            if len(self._events) >= self.MAX_PENDING_EVENTS:
                del self._pending[self._events.popleft()]
                self._dropped += 1
            key = ("event", object())
            self._events.append(key)
        self._pending[key] = op


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


_KV_GET = """
local expiry = redis.call('HGET', KEYS[1], ARGV[2])
if expiry then
  local t = redis.call('TIME')
  if tonumber(expiry) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
    return false
  end
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

_KV_SET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], ARGV[2], now + tonumber(ARGV[4]))
end
return 1
"""

_KV_INCR = """
local expiry = redis.call('HGET', KEYS[1], ARGV[2])
if expiry then
  local t = redis.call('TIME')
  if tonumber(expiry) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
    redis.call('HDEL', KEYS[1], ARGV[1], ARGV[2])
  end
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
"""

_EXPIRY = "\x00expires:"


class PluginStore:
    """`context.kv`: a plugin's own strings in Redis for one account (`keys.plugin_store`), async.

    Everything lives in one hash; a value set with a `ttl` (seconds) reads as absent once it has expired (the
    expiry is kept in a hidden field, checked with Redis's clock). Calls run in the loop's executor.
    """

    def __init__(self, redis: Redis, plugin: str, account_id: int) -> None:
        self._redis = redis
        self._key = keys.plugin_store(plugin, account_id)

    @staticmethod
    def _check(key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > MAX_KV_KEY or key.startswith("\x00"):
            raise ValueError(f"a kv key must be a non-empty string of at most {MAX_KV_KEY} characters")
        return key

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def _eval(self, script: str, *args: Any) -> Any:
        return self._redis.eval(script, 1, self._key, *args)

    async def get(self, key: str) -> str | None:
        value = await self._run(self._eval, _KV_GET, self._check(key), _EXPIRY + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str | int | float, ttl: float | None = None) -> None:
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds (or None: no expiry)")
        expiry = "" if ttl is None else str(max(1, int(ttl * 1000)))
        await self._run(self._eval, _KV_SET, self._check(key), _EXPIRY + key, str(value), expiry)

    async def delete(self, key: str) -> None:
        await self._run(self._redis.hdel, self._key, self._check(key), _EXPIRY + key)

    async def incr(self, key: str, amount: int = 1) -> int:
        return int(await self._run(self._eval, _KV_INCR, self._check(key), _EXPIRY + key, int(amount)))


# --- what a plugin sees -----------------------------------------------------------------------------------


class _AccountLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each message with the account, and puts `account_id` and `plugin` on the record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"account {extra.get('account_id')}: {msg}", kwargs


class PluginContext:
    """What `setup(client, context)` gets besides the client (see the module's docstring)."""

    def __init__(self, host: PluginHost, loaded: _Loaded, config: dict[str, Any]) -> None:
        self.account_id = loaded.account_id
        self.plugin = loaded.info.name
        self.config = config
        self.log: logging.LoggerAdapter = _AccountLog(  # type: ignore[type-arg]
            logging.getLogger(f"fleet.plugin.{self.plugin}"), {"account_id": self.account_id, "plugin": self.plugin}
        )
        self.kv = PluginStore(host.redis, self.plugin, self.account_id)
        self._host = host
        self._loaded = loaded

    def now(self) -> float:
        """The time, epoch seconds (the host's clock: tests fix it)."""
        return self._host.clock()

    def emit(self, kind: str, text: str, alert: bool = False) -> None:
        """Send an event to the control plane (shown in the bot and the CLI; `alert`: sent to the admins).

        Never blocks; at most EMITS_PER_MINUTE per plugin and account, the rest dropped (and logged).
        """
        loaded = self._loaded
        if loaded.gone:
            return
        kind = safe_detail(str(kind), MAX_KIND) or "event"
        text = str(text)
        if len(text) > MAX_EMIT_TEXT:
            text = text[: MAX_EMIT_TEXT - 1] + "…"
        now = time.monotonic()
        if now - loaded.emit_window >= 60.0:
            if loaded.emits_dropped:
                self.log.warning(
                    "%d events dropped in the last minute (over %d a minute)", loaded.emits_dropped, EMITS_PER_MINUTE
                )
            loaded.emit_window, loaded.emits, loaded.emits_dropped = now, 0, 0
        if loaded.emits >= EMITS_PER_MINUTE:
            loaded.emits_dropped += 1
            return
        loaded.emits += 1
        self._host.writer.event(
            WireEventKind.PLUGIN_EVENT,
            self.account_id,
            {"plugin": self.plugin, "kind": kind, "text": text, "alert": bool(alert)},
        )

    def create_task(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work for this plugin: named after it, cancelled when it unloads; what it raises is
        counted and reported like a handler's error."""
        loaded = self._loaded
        if loaded.closed:
            coroutine.close()
            raise RuntimeError(f"plugin {self.plugin} is unloaded for account {self.account_id}")
        task = asyncio.get_running_loop().create_task(coroutine, name=loaded.task_name)
        loaded.tasks.add(task)
        task.add_done_callback(lambda done: self._host._task_done(loaded, done))
        return task


@dataclass(eq=False)
class _Registration:
    callback: Callable[..., Any]  # the plugin's own
    builder: Any  # the Telethon event builder
    wrapper: Callable[[Any], Awaitable[None]]  # what the client actually holds


@dataclass(eq=False)
class _Loaded:
    """One plugin loaded for one account."""

    info: PluginInfo
    account_id: int
    client: Any  # the account's real client
    config: dict[str, Any]  # as desired (before defaults)
    task_name: str
    registrations: list[_Registration] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # context.create_task
    running: set[asyncio.Task[Any]] = field(default_factory=set)  # handler calls in flight
    teardown: Callable[[], Any] | None = None
    closed: bool = False  # unloading: no new handler calls or tasks
    gone: bool = False  # unloaded, teardown done: emit() does nothing
    state: str = PluginState.RUNNING.value
    errors: int = 0
    last_error: Detail | None = None
    seen_errors: set[str] = field(default_factory=set)
    last_log: float = float("-inf")
    unlogged: int = 0
    last_event: float = float("-inf")
    emit_window: float = float("-inf")
    emits: int = 0
    emits_dropped: int = 0


class PluginClient:
    """The account's client as a plugin sees it: everything Telethon offers, except the fleet's secrets and
    the connection's lifecycle; event handlers registered through it are wrapped by the host (isolation) and
    removed when the plugin unloads. Setting attributes on the shared client is refused."""

    __slots__ = ("_fleet_client", "_fleet_host", "_fleet_loaded")

    def __init__(self, client: Any, host: PluginHost, loaded: _Loaded) -> None:
        object.__setattr__(self, "_fleet_client", client)
        object.__setattr__(self, "_fleet_host", host)
        object.__setattr__(self, "_fleet_loaded", loaded)

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or (name.startswith("__") and name.endswith("__")):
            return object.__getattribute__(self, name)
        if name.startswith("_"):
            raise AttributeError(f"{name}: a plugin's client does not expose private attributes of the fleet's client")
        if name in SECRETS:
            raise AttributeError(f"{name}: the account's secrets are not available to plugins")
        if name in LIFECYCLE:
            raise AttributeError(f"{name}: the fleet manages the account's connection and login, not plugins")
        return getattr(object.__getattribute__(self, "_fleet_client"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{name}: plugins may not change the account's shared client")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{name}: plugins may not change the account's shared client")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Raw API requests, as `await client(functions.X(...))`."""
        return object.__getattribute__(self, "_fleet_client")(*args, **kwargs)

    def __repr__(self) -> str:
        loaded: _Loaded = object.__getattribute__(self, "_fleet_loaded")
        return f"<PluginClient plugin={loaded.info.name} account={loaded.account_id}>"

    def add_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> None:
        host: PluginHost = object.__getattribute__(self, "_fleet_host")
        loaded: _Loaded = object.__getattribute__(self, "_fleet_loaded")
        client = object.__getattribute__(self, "_fleet_client")
        if loaded.closed:
            raise RuntimeError(f"plugin {loaded.info.name} is unloaded for account {loaded.account_id}")
        builders = events._get_handlers(callback)  # @events.register(...) on the callback
        if builders is None:
            if isinstance(event, type):
                event = event()
            elif not event:
                event = events.Raw()
            builders = [event]
        for builder in builders:
            wrapper = host._wrap(loaded, callback)
            client.add_event_handler(wrapper, builder)
            loaded.registrations.append(_Registration(callback, builder, wrapper))

    def on(self, event: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def decorator(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.add_event_handler(function, event)
            return function

        return decorator

    def remove_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> int:
        loaded: _Loaded = object.__getattribute__(self, "_fleet_loaded")
        client = object.__getattribute__(self, "_fleet_client")
        kind = type(event) if event is not None and not isinstance(event, type) else event
        found = 0
        for registration in list(loaded.registrations):
            if registration.callback == callback and (kind is None or isinstance(registration.builder, kind)):
                client.remove_event_handler(registration.wrapper)
                loaded.registrations.remove(registration)
                found += 1
        return found

    def list_event_handlers(self) -> list[tuple[Callable[[Any], Any], Any]]:
        """This plugin's own handlers (not the other plugins')."""
        loaded: _Loaded = object.__getattribute__(self, "_fleet_loaded")
        return [(registration.callback, registration.builder) for registration in loaded.registrations]


_OWN = frozenset({"add_event_handler", "on", "remove_event_handler", "list_event_handlers"})


# --- blocking detection -----------------------------------------------------------------------------------

BlockCallback = Callable[[str | None, float, bool], None]


class LoopWatchdog:
    """Notices an event loop that stopped turning, from a thread of its own.

    Every `threshold / 4` seconds it asks the loop to run a tiny callback; when one is overdue by more than
    `threshold` the loop is blocked, and `on_block(task_name, seconds, ongoing=True)` is called (from the
    watchdog's thread) with the name of the task running at that moment (`asyncio.current_task(loop)`: a
    dict lookup, safe from another thread in CPython), once per stall. When the loop turns again,
    `on_block(task_name, seconds, ongoing=False)` is called (on the loop) with the stall's whole length.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float, on_block: BlockCallback) -> None:
        self.loop = loop
        self.threshold = threshold
        self.on_block = on_block
        self._lock = threading.Lock()
        self._sent: float | None = None  # monotonic time of the probe in flight
        self._stalled: str | bool | None = False  # False: no stall reported; else the blocking task's name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watchdog", daemon=True)

    def start(self) -> LoopWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(2)

    def _run(self) -> None:
        interval = max(0.01, self.threshold / 4)
        while not self._stop.wait(interval):
            if self.loop.is_closed():
                return
            if not self.loop.is_running():  # stopped (shutting down): not a stall
                with self._lock:
                    self._sent, self._stalled = None, False
                continue
            now = time.monotonic()
            with self._lock:
                sent = self._sent
                if sent is None:
                    self._sent = now
            if sent is None:
                try:
                    self.loop.call_soon_threadsafe(self._turned)
                except RuntimeError:  # the loop was closed
                    return
                continue
            with self._lock:
                report = now - sent > self.threshold and self._stalled is False
                if report:
                    task = asyncio.current_task(self.loop)
                    self._stalled = task.get_name() if task is not None else None
                    name = self._stalled
            if report:
                self._notify(name, now - sent, True)

    def _turned(self) -> None:
        now = time.monotonic()
        with self._lock:
            sent, stalled = self._sent, self._stalled
            self._sent, self._stalled = None, False
        if sent is not None and stalled is not False:
            self._notify(stalled if isinstance(stalled, str) else None, now - sent, False)

    def _notify(self, name: str | None, seconds: float, ongoing: bool) -> None:
        try:
            self.on_block(name, seconds, ongoing)
        except Exception:
            log.exception("the loop watchdog's callback failed")


# --- the host ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Account:
    account_id: int
    client: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: dict[str, _Loaded] = field(default_factory=dict)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)  # what attach/apply last asked for


class PluginHost:
    """Loads, reconfigures and unloads the plugins of the accounts running on this worker.

    `attach(account_id, client, configs)` once the account's client runs, `apply(account_id, configs)` when
    its desired plugins change, `detach(account_id)` before the client stops (all three on the account's
    loop); `watch(loop)` once per event loop (idempotent); `close()` at shutdown. `holder` (the worker's lease
    holder id) fences status and event writes by the account's lease.
    """

    def __init__(
        self,
        redis: Redis,
        worker_name: str,
        catalogue: dict[str, PluginInfo],
        block_threshold: float = 1.0,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.worker_name = worker_name
        self.catalogue = catalogue
        self.block_threshold = block_threshold
        self.clock = clock
        self.writer = _Writer(redis, holder)
        self._accounts: dict[int, _Account] = {}
        self._lock = threading.Lock()  # the accounts table, and counters the watchdog threads touch
        self._watchdogs: dict[int, LoopWatchdog] = {}
        self._by_task: dict[str, _Loaded] = {}  # task name -> the plugin loaded (or loading) under it

    # --- the worker's calls

    async def attach(self, account_id: int, client: Any, configs: dict[str, dict[str, Any]]) -> None:
        """Load the account's enabled plugins onto its running client. One that fails to load is reported
        (`error`, with the reason) and the others load."""
        with self._lock:
            account = self._accounts.get(account_id)
        if account is not None:
            if account.client is client:
                await self.apply(account_id, configs)
                return
            await self.detach(account_id)
        account = _Account(account_id, client)
        with self._lock:
            self._accounts[account_id] = account
        async with account.lock:
            for name in sorted(configs):
                await self._load(account, name, configs[name])

    async def apply(self, account_id: int, configs: dict[str, dict[str, Any]]) -> None:
        """Bring the account's plugins to `configs`: unload the removed, load the added, reload those whose
        configuration changed; the client's connection is not touched. Unchanged ones are left alone, even
        if they failed to load (change their configuration, or restart the account, to try again)."""
        with self._lock:
            account = self._accounts.get(account_id)
        if account is None:
            log.debug("account %d: plugins not attached here; nothing to apply", account_id)
            return
        async with account.lock:
            for name in sorted(set(account.desired) - set(configs)):
                await self._unload(account, name)
                account.desired.pop(name, None)
                self.writer.forget(account_id, name)
            for name in sorted(configs):
                if name in account.desired and account.desired[name] == configs[name]:
                    continue
                await self._unload(account, name)
                await self._load(account, name, configs[name])

    async def detach(self, account_id: int) -> None:
        """Unload every plugin of the account and remove its plugin statuses."""
        with self._lock:
            account = self._accounts.pop(account_id, None)
        if account is None:
            return
        async with account.lock:
            for name in sorted(account.loaded):
                await self._unload(account, name)
            account.desired.clear()
        self.writer.forget(account_id)

    def loaded(self, account_id: int) -> dict[str, dict[str, Any]]:
        """name -> configuration of the plugins running for the account now."""
        with self._lock:
            account = self._accounts.get(account_id)
            items = list(account.loaded.items()) if account is not None else []
        return {name: copy.deepcopy(loaded.config) for name, loaded in items}

    def reassert(self) -> None:
        """After Redis lost its data: write the status of every plugin loaded here again."""
        with self._lock:
            loaded = [plugin for account in self._accounts.values() for plugin in account.loaded.values()]
        for plugin in loaded:
            self._status(plugin.account_id, plugin.info.name, plugin.state, plugin.errors, plugin.last_error)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the blocking detection for an event loop (once per loop; later calls do nothing)."""
        with self._lock:
            if id(loop) in self._watchdogs or self.block_threshold <= 0:
                return
            self._watchdogs[id(loop)] = LoopWatchdog(loop, self.block_threshold, self._blocked).start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the statuses and events so far are in Redis."""
        return self.writer.flush(timeout)

    def close(self) -> None:
        with self._lock:
            watchdogs = list(self._watchdogs.values())
            self._watchdogs.clear()
        for watchdog in watchdogs:
            watchdog.stop()
        self.writer.close()

    # --- loading and unloading (on the account's loop, under its lock)

    def _status(self, account_id: int, name: str, state: str, errors: int = 0, said: Detail | None = None) -> None:
        text, code = (safe_detail(said.text, MAX_ERROR), said.encode()) if said is not None else ("", "")
        self.writer.status(account_id, name, PluginStatus(state, errors, text, time.time(), code))

    def _refuse(self, account: _Account, name: str, reason: Detail) -> None:
        log.error("account %d: plugin %s not loaded: %s", account.account_id, name, reason.text)
        self._status(account.account_id, name, PluginState.ERROR.value, 1, reason)

    async def _load(self, account: _Account, name: str, config: dict[str, Any]) -> None:
        account.desired[name] = copy.deepcopy(config)
        info = self.catalogue.get(name)
        if info is None:
            self._refuse(account, name, detail("plugin_unknown", worker=self.worker_name))
            return
        if info.error is not None or info.module is None:
            self._refuse(account, name, free(info.error) if info.error else detail("plugin_not_importable"))
            return
        problems = validate_config(info, config)
        if problems:
            self._refuse(account, name, detail("plugin_config_invalid", problems="; ".join(problems)))
            return
        loaded = _Loaded(
            info, account.account_id, account.client, copy.deepcopy(config), task_name(name, account.account_id)
        )
        context = PluginContext(self, loaded, with_defaults(info.schema, config))
        client = PluginClient(account.client, self, loaded)
        with self._lock:
            self._by_task[loaded.task_name] = loaded
        try:
            result = await self._in_plugin_task(loaded, info.module.setup, client, context)
        except Exception as error:
            reason = (
                detail("plugin_setup_timeout", seconds=SETUP_TIMEOUT)
                if isinstance(error, TimeoutError)
                else detail("plugin_setup_failed", cause=free(describe(error)))
            )
            log.error(
                "account %d: plugin %s: %s",
                account.account_id,
                name,
                reason.text,
                exc_info=(type(error), error, error.__traceback__),
            )
            await self._dismantle(loaded)
            loaded.gone = True
            self._status(account.account_id, name, PluginState.ERROR.value, 1, reason)
            return
        if callable(result):
            loaded.teardown = result
        with self._lock:
            account.loaded[name] = loaded
        log.info("account %d: plugin %s loaded", account.account_id, name)
        with self._lock:
            state, errors, last_error = loaded.state, loaded.errors, loaded.last_error  # it may have blocked already
        self._status(account.account_id, name, state, errors, last_error)

    async def _unload(self, account: _Account, name: str) -> None:
        with self._lock:
            loaded = account.loaded.pop(name, None)
        if loaded is None:
            return
        teardown = loaded.teardown
        await self._dismantle(loaded)
        if teardown is not None:
            try:
                await self._in_plugin_task(loaded, teardown)
            except Exception as error:  # noqa: BLE001 - unloading goes on
                log.warning("account %d: plugin %s: teardown failed: %s", account.account_id, name, describe(error))
        loaded.gone = True
        log.info("account %d: plugin %s unloaded", account.account_id, name)

    async def _dismantle(self, loaded: _Loaded) -> None:
        """Remove exactly the handlers the plugin added and cancel its tasks and handler calls in flight."""
        loaded.closed = True
        with self._lock:
            if self._by_task.get(loaded.task_name) is loaded:
                del self._by_task[loaded.task_name]
        for registration in loaded.registrations:
            try:
                loaded.client.remove_event_handler(registration.wrapper)
            except Exception as error:  # noqa: BLE001
                log.warning("account %d: a handler could not be removed: %s", loaded.account_id, describe(error))
        loaded.registrations.clear()
        pending = [task for task in (*loaded.tasks, *loaded.running) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            done, still = await asyncio.wait(pending, timeout=UNLOAD_TIMEOUT)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: the plugin is going away
            if still:
                log.warning(
                    "account %d: plugin %s: %d task(s) ignored cancellation",
                    loaded.account_id,
                    loaded.info.name,
                    len(still),
                )
        loaded.tasks.clear()

    async def _in_plugin_task(self, loaded: _Loaded, function: Callable[..., Any], *args: Any) -> Any:
        """Run plugin code (setup, teardown) in a task named after the plugin, under SETUP_TIMEOUT."""
        task = asyncio.get_running_loop().create_task(_call(function, *args), name=loaded.task_name)
        return await asyncio.wait_for(task, SETUP_TIMEOUT)

    # --- isolation

    def _wrap(self, loaded: _Loaded, callback: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
        host = self

        async def plugin_handler(event: Any) -> None:
            if loaded.closed:
                return
            task = asyncio.get_running_loop().create_task(_call(callback, event), name=loaded.task_name)
            loaded.running.add(task)
            try:
                await task
            except events.StopPropagation:
                raise
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and not (current is not None and current.cancelling()):
                    return  # the plugin was unloaded meanwhile
                raise
            except Exception as error:  # noqa: BLE001 - isolation: counted and reported, never propagated
                host._failed(loaded, error)
            finally:
                loaded.running.discard(task)

        plugin_handler.__name__ = f"{loaded.task_name}:{getattr(callback, '__name__', 'handler')}"
        plugin_handler.__qualname__ = plugin_handler.__name__
        return plugin_handler

    def _task_done(self, loaded: _Loaded, task: asyncio.Task[Any]) -> None:
        loaded.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not loaded.closed:
            self._failed(loaded, error)

    def _failed(self, loaded: _Loaded, error: BaseException) -> None:
        """A handler or task of a plugin raised: count, log, report, mark it failing."""
        text = describe(error)
        if loaded.closed:
            log.info("account %d: plugin %s raised %s while unloading", loaded.account_id, loaded.info.name, text)
            return
        now = time.monotonic()
        with self._lock:
            loaded.errors += 1
            loaded.last_error = free(text)
            loaded.state = PluginState.FAILING.value
            errors = loaded.errors
            first = text not in loaded.seen_errors
            if first and len(loaded.seen_errors) < 100:
                loaded.seen_errors.add(text)
            log_now = first or now - loaded.last_log >= ERROR_LOG_INTERVAL
            unlogged = loaded.unlogged
            if log_now:
                loaded.last_log, loaded.unlogged = now, 0
            else:
                loaded.unlogged += 1
            event_now = now - loaded.last_event >= ERROR_EVENT_INTERVAL
            if event_now:
                loaded.last_event = now
        where = f"account {loaded.account_id}: plugin {loaded.info.name}"
        if first:
            log.error("%s raised %s", where, text, exc_info=(type(error), error, error.__traceback__))
        elif log_now:
            log.error("%s raised %s (%d errors so far, %d not logged)", where, text, errors, unlogged)
        if event_now:
            self.writer.event(
                WireEventKind.PLUGIN_ERROR,
                loaded.account_id,
                {"plugin": loaded.info.name, "error": text, "count": errors, "blocked": False},
            )
        self._status(loaded.account_id, loaded.info.name, PluginState.FAILING.value, errors, free(text))

    def _blocked(self, name: str | None, seconds: float, ongoing: bool) -> None:
        """The watchdog's report: a loop stalled `seconds` while task `name` ran (see `LoopWatchdog`)."""
        with self._lock:
            loaded = self._by_task.get(name) if name else None
        if loaded is None:
            state = "has been" if ongoing else "was"
            log.warning("an event loop %s blocked for %.1f s (task %s, not a plugin)", state, seconds, name)
            return
        plugin, account_id = loaded.info.name, loaded.account_id
        said = detail("plugin_still_blocked" if ongoing else "plugin_blocked", seconds=seconds)
        text = said.text
        log.warning("account %d: plugin %s %s", account_id, plugin, text)
        with self._lock:
            if ongoing:
                loaded.errors += 1
            loaded.state = PluginState.BLOCKED.value
            loaded.last_error = said
            errors = loaded.errors
        if ongoing:
            self.writer.event(
                WireEventKind.PLUGIN_ERROR,
                account_id,
                {"plugin": plugin, "error": text, "code": said.encode(), "count": errors, "blocked": True},
            )
        if not loaded.closed:
            self._status(account_id, plugin, PluginState.BLOCKED.value, errors, said)
