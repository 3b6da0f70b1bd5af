"""Plugins on the account manager's running clients (`worker.plugins.host.PluginHost` does the loading): read
each account's enabled plugins, load them once its client runs, unload them before it stops, and apply a change
of configuration to the running accounts without restarting them.

Only plugins read updates, so a client receives them only while its account has plugins enabled
(`wants_updates` before the client is made; `enable_updates` on a running one when a plugin is enabled).

`PluginMethods` is the plugin half of `worker.account_manager.AccountManager` (mixed into it, as `LoginMethods`
is): `wants_updates`, `attach_plugins`, `detach_plugins`, `sync_plugins`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from redis import Redis

from worker.clients import TelegramClientLike
from worker.failures import describe_error

if TYPE_CHECKING:
    from worker.runner import AccountRunner

log = logging.getLogger(__name__)


async def enable_updates(client: TelegramClientLike) -> None:
    """Let a running client receive updates, if it was started without (`enable_updates` of `worker.telegram`'s
    client; the tests' fake clients always receive them)."""
    enable = getattr(client, "enable_updates", None)
    if enable is not None:
        await enable()


class PluginMethods:
    """The plugins of the accounts running on this worker, as `AccountManager` hosts them."""

    redis: Redis
    plugins: Any
    runners: dict[int, AccountRunner]
    _plugins_version: int | None
    _lock: threading.RLock

    def runner_of(self, account_id: int) -> AccountRunner | None:
        raise NotImplementedError  # the account manager's

    async def _plugin_configs(self, account_id: int) -> dict[str, Any] | None:
        """The account's enabled plugins and their configurations; None when they cannot be read."""
        from celery_app import plugin_config

        loop = asyncio.get_running_loop()
        try:
            desired = await loop.run_in_executor(None, plugin_config.read_desired, self.redis, [account_id])
        except Exception as error:  # noqa: BLE001 - the account runs without plugins rather than not at all
            log.warning("account %d: plugin configuration unavailable (%s)", account_id, describe_error(error))
            return None
        return dict(desired.get(account_id, {}))

    async def wants_updates(self, account_id: int) -> bool:
        """Whether the account's client is to receive updates: only plugins read them, so only an account with
        plugins enabled does (yes when that cannot be read: a plugin may be enabled)."""
        if self.plugins is None:
            return False
        return (await self._plugin_configs(account_id)) != {}

    async def attach_plugins(self, account_id: int, client: TelegramClientLike) -> None:
        if self.plugins is None:
            return
        configs = await self._plugin_configs(account_id) or {}
        self.plugins.watch(asyncio.get_running_loop())
        try:
            if configs:
                await enable_updates(client)
            await self.plugins.attach(account_id, client, configs)
        except Exception:
            log.exception("account %d: plugins could not be attached", account_id)

    async def detach_plugins(self, account_id: int) -> None:
        if self.plugins is None:
            return
        try:
            await self.plugins.detach(account_id)
        except Exception:
            log.exception("account %d: plugins could not be detached", account_id)

    def sync_plugins(self) -> None:
        """Called with every heartbeat: when any account's plugin configuration changed (a version counter),
        re-read those of the accounts running here and apply them without restarting anything."""
        if self.plugins is None:
            return
        from celery_app import plugin_config

        version = plugin_config.version(self.redis)
        if version is None or version == self._plugins_version:
            return  # unchanged, or Redis lost it and the control plane has not written it again yet
        with self._lock:
            running = {account_id: runner for account_id, runner in self.runners.items() if runner.client is not None}
        desired = plugin_config.read_desired(self.redis, list(running))
        for account_id, runner in running.items():
            runner.loop_thread.submit(self._apply_plugins(account_id, desired.get(account_id, {})))
        self._plugins_version = version

    async def _apply_plugins(self, account_id: int, configs: dict[str, Any]) -> None:
        runner = self.runner_of(account_id)
        if runner is None or runner.client is None:
            return
        try:
            if configs:
                await enable_updates(runner.client)
            await self.plugins.apply(account_id, configs)
        except Exception:
            log.exception("account %d: plugin configuration could not be applied", account_id)
