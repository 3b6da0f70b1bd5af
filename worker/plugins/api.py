"""The plugin API: what a plugin author writes against, and what the fleet guarantees in return.

A plugin is a Python module (or package) with:

    NAME = "greeter"                   # optional; default: the module's (or entry point's) name
    DESCRIPTION = "Says hello back"    # one line, shown by `plugins list`
    CONFIG_SCHEMA = {...}              # JSON Schema of its per-account configuration; default {"type": "object"}
    SECRET_CONFIG = {"token"}          # optional: configuration keys holding secrets (strings): kept encrypted,
                                       # sealed to the worker that runs the account, shown as ***

    def validate(config) -> list[str]: # optional: checks a schema cannot express; [] when the config is fine
        ...

    def setup(client, context):        # sync or async; runs each time the plugin loads for an account
        @client.on(events.NewMessage(incoming=True))
        async def handler(event): ...
        context.create_task(poll())    # background work: cancelled when the plugin unloads
        return teardown                # optional: a function or coroutine function run on unload

What `setup` gets:

- `client` is a `PluginClient`: the account's Telethon client without the fleet's secrets (`session`,
  `api_id`, `api_hash`, private `_` attributes) and without control of the connection (`connect`,
  `disconnect`, `log_out`, `sign_in`, ...: `LIFECYCLE`). Handlers added through it (`@client.on(...)`,
  `add_event_handler`) are the plugin's own: `list_event_handlers` shows only them, and they are removed when
  the plugin unloads. Setting an attribute on the client is refused.
- `context` is a `PluginContext`: `account_id`; `plugin` (its name); `config` (validated, the schema's
  top-level `default`s filled in); `log` (logger `fleet.plugin.<name>`, each line naming the account); `kv`
  (a `PluginStore`: `await kv.get/set/delete/incr(...)`, strings in Redis scoped to the plugin and the
  account, surviving restarts and moves, `set(..., ttl=seconds)` to expire); `emit(kind, text, alert=False)`
  (an event for the control plane: the bot and the CLI show it, an alert goes to the admins);
  `create_task(coro)` (background work, cancelled on unload); `now()` (the clock, epoch seconds; tests fix it).

Limits: `setup` and a teardown must finish within 30 s (`worker.plugins.host.SETUP_TIMEOUT`), cancelled tasks
within 5 s of an unload; `emit` sends at most EMITS_PER_MINUTE events a minute per plugin and account (the
rest are dropped, and the log says how many), with `kind` cut to MAX_KIND and `text` to MAX_EMIT_TEXT
characters; a `kv` key is a non-empty string of at most 256 characters.

Errors: a `setup` that raises or times out leaves the plugin unloaded, with the reason in its status
(`error`); the account's other plugins load. What a handler or a `create_task` task raises is caught,
counted, logged and shown in the plugin's status (`failing`, with the last error on one line); the first is
sent to the admins as a `plugin.error` event, then at most one a minute; the account and the other plugins
carry on. `telethon.events.StopPropagation` works as in Telethon. A plugin that keeps its event loop busy
longer than PLUGIN_BLOCK_SECONDS is named (`blocked`, with how long): the loop is shared by many accounts,
so use `await asyncio.sleep`, async libraries or `loop.run_in_executor`.

This is a guard rail, not a sandbox: a plugin runs in the worker's process, with its rights.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, Protocol

from redis import Redis
from telethon import events

from celery_app.events import WireEventKind
from common.redaction import safe_detail
from worker.plugins.loaded import HandlerRegistration, LoadedPlugin
from worker.plugins.store import PluginStore
from worker.plugins.writer import PluginWriter

EMITS_PER_MINUTE = 60  # context.emit beyond this is dropped (and said so in the log)
MAX_EMIT_TEXT = 1000
MAX_KIND = 64

# Telethon attributes a plugin may not reach through its client: the fleet's secrets, and the connection
# and login, which belong to the account's runner.
SECRETS = frozenset({"session", "api_id", "api_hash"})
LIFECYCLE = frozenset(
    {"connect", "disconnect", "log_out", "start", "sign_in", "sign_up", "send_code_request", "qr_login", "edit_2fa"}
)


class PluginHostLike(Protocol):
    """What a plugin's context and client use of the host that loaded it (`worker.plugins.host.PluginHost`)."""

    redis: Redis
    clock: Callable[[], float]
    writer: PluginWriter

    def wrap_handler(
        self, loaded: LoadedPlugin, callback: Callable[[Any], Any]
    ) -> Callable[[Any], Awaitable[None]]: ...

    def task_finished(self, loaded: LoadedPlugin, task: asyncio.Task[Any]) -> None: ...


class _AccountLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each message with the account, and puts `account_id` and `plugin` on the record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"account {extra.get('account_id')}: {msg}", kwargs


class PluginContext:
    """What `setup(client, context)` gets besides the client (see the module's docstring)."""

    def __init__(self, host: PluginHostLike, loaded: LoadedPlugin, config: dict[str, Any]) -> None:
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
        task.add_done_callback(lambda done: self._host.task_finished(loaded, done))
        return task


class PluginClient:
    """The account's client as a plugin sees it: everything Telethon offers, except the fleet's secrets and
    the connection's lifecycle; event handlers registered through it are wrapped by the host (isolation) and
    removed when the plugin unloads. Setting attributes on the shared client is refused."""

    __slots__ = ("_fleet_client", "_fleet_host", "_fleet_loaded")

    def __init__(self, client: Any, host: PluginHostLike, loaded: LoadedPlugin) -> None:
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
        loaded: LoadedPlugin = object.__getattribute__(self, "_fleet_loaded")
        return f"<PluginClient plugin={loaded.info.name} account={loaded.account_id}>"

    def add_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> None:
        host: PluginHostLike = object.__getattribute__(self, "_fleet_host")
        loaded: LoadedPlugin = object.__getattribute__(self, "_fleet_loaded")
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
            wrapper = host.wrap_handler(loaded, callback)
            client.add_event_handler(wrapper, builder)
            loaded.registrations.append(HandlerRegistration(callback, builder, wrapper))

    def on(self, event: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def decorator(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.add_event_handler(function, event)
            return function

        return decorator

    def remove_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> int:
        loaded: LoadedPlugin = object.__getattribute__(self, "_fleet_loaded")
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
        loaded: LoadedPlugin = object.__getattribute__(self, "_fleet_loaded")
        return [(registration.callback, registration.builder) for registration in loaded.registrations]


_OWN = frozenset({"add_event_handler", "on", "remove_event_handler", "list_event_handlers"})
