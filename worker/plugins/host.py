"""`PluginHost`: loads, reconfigures and unloads the plugins of the accounts running on this worker, and keeps
them isolated from the account and from each other.

Each handler call, `setup`, teardown and `context.create_task` task runs in a task named
`plugin:<name>:<account>`. What a handler or task raises is caught, counted, logged (once per distinct error,
then at most once a minute), reported as a `plugin.error` wire event (the first, then at most one a minute per
plugin and account) and shown in its status (`failing`, with the last error); the account and the other
plugins carry on; `telethon.events.StopPropagation` works as in Telethon. A `LoopWatchdog` per event loop
notices the loop stalled longer than PLUGIN_BLOCK_SECONDS and names the plugin whose task was running
(status `blocked`, a `plugin.error` event with `blocked: true`, once per stall).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from telethon import events

from celery_app.events import WireEventKind
from celery_app.plugin_config import PluginState, PluginStatus
from common.details import Detail, detail, free
from common.plugin_catalogue import (
    MAX_ERROR,
    PluginInfo,
    describe,
    secret_values,
    validate_config,
    with_defaults,
)
from common.redaction import safe_detail
from worker.plugins.api import PluginClient, PluginContext
from worker.plugins.loaded import LoadedPlugin, task_name
from worker.plugins.sealed import Opener, open_config
from worker.plugins.watchdog import LoopWatchdog
from worker.plugins.writer import PluginWriter

log = logging.getLogger(__name__)

SETUP_TIMEOUT = 30.0  # setup() and a teardown must finish within this
UNLOAD_TIMEOUT = 5.0  # cancelled tasks get this long to finish
ERROR_EVENT_INTERVAL = 60.0  # at most one plugin.error event a minute per plugin and account
ERROR_LOG_INTERVAL = 60.0  # a repeated error is logged at most once a minute


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async function (or one returning an awaitable) and return its result."""
    result = function(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(eq=False)
class _Account:
    """The plugins of one account on this worker."""

    account_id: int
    client: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaded: dict[str, LoadedPlugin] = field(default_factory=dict)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)  # what attach/apply last asked for


class PluginHost:
    """Loads, reconfigures and unloads the plugins of the accounts running on this worker.

    `attach(account_id, client, configs)` once the account's client runs, `apply(account_id, configs)` when
    its desired plugins change, `detach(account_id)` before the client stops (all three on the account's
    loop); `watch(loop)` once per event loop (idempotent); `close()` at shutdown. `holder` (the worker's lease
    holder id) fences status and event writes by the account's lease. `opener` (the worker's
    `WorkerSecrets.decrypt`) opens secret configuration values sealed to this worker (`worker.plugins.sealed`):
    a plugin gets them clear, in memory only.
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
        opener: Opener | None = None,
    ) -> None:
        self.redis = redis
        self.opener = opener
        self.worker_name = worker_name
        self.catalogue = catalogue
        self.block_threshold = block_threshold
        self.clock = clock
        self.writer = PluginWriter(redis, worker_name, holder)
        self._accounts: dict[int, _Account] = {}
        self._lock = threading.Lock()  # the accounts table, and counters the watchdog threads touch
        self._watchdogs: dict[int, LoopWatchdog] = {}
        self._by_task: dict[str, LoadedPlugin] = {}  # task name -> the plugin loaded (or loading) under it

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
                await self._load(account, name, *self._opened(account_id, name, configs[name]))

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
                config, refusal = self._opened(account_id, name, configs[name])
                if name in account.desired and account.desired[name] == config:
                    continue  # (a secret value sealed again, to this worker: the same once opened)
                await self._unload(account, name)
                await self._load(account, name, config, refusal)

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

    def _opened(self, account_id: int, name: str, config: dict[str, Any]) -> tuple[dict[str, Any], Detail | None]:
        """The configuration with its sealed secret values opened (or as it came, and why it cannot be used)."""
        return open_config(config, account_id, name, self.opener)

    async def _load(self, account: _Account, name: str, config: dict[str, Any], refusal: Detail | None = None) -> None:
        account.desired[name] = copy.deepcopy(config)
        if refusal is not None:
            self._refuse(account, name, refusal)
            return
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
        loaded = LoadedPlugin(
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
                else detail("plugin_setup_failed", cause=free(describe(error, secret_values(info, config))))
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

    async def _dismantle(self, loaded: LoadedPlugin) -> None:
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

    async def _in_plugin_task(self, loaded: LoadedPlugin, function: Callable[..., Any], *args: Any) -> Any:
        """Run plugin code (setup, teardown) in a task named after the plugin, under SETUP_TIMEOUT."""
        task = asyncio.get_running_loop().create_task(_call(function, *args), name=loaded.task_name)
        return await asyncio.wait_for(task, SETUP_TIMEOUT)

    # --- isolation (the plugin's client and context call these)

    def wrap_handler(self, loaded: LoadedPlugin, callback: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
        """What the account's client holds for a plugin's handler: each call runs in a task named after the
        plugin; what it raises is counted and reported, never propagated (StopPropagation aside)."""
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

    def task_finished(self, loaded: LoadedPlugin, task: asyncio.Task[Any]) -> None:
        """A `context.create_task` task ended: what it raised counts as the plugin's error."""
        loaded.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not loaded.closed:
            self._failed(loaded, error)

    def _failed(self, loaded: LoadedPlugin, error: BaseException) -> None:
        """A handler or task of a plugin raised: count, log, report, mark it failing."""
        text = describe(error, secret_values(loaded.info, loaded.config))  # never its secret, even in its error
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
