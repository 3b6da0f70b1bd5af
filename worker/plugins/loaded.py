"""`LoadedPlugin`: the bookkeeping of one plugin loaded for one account — its handlers, tasks, error counts
and emit budget — shared by the host (`worker.plugins.host`) and the plugin's context and client
(`worker.plugins.api`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from celery_app.plugin_config import PluginState
from common.details import Detail
from common.plugin_catalogue import PluginInfo

TASK_PREFIX = "plugin:"


def task_name(plugin: str, account_id: int) -> str:
    """The name of every task running a plugin's code for an account: how the watchdog names a blocker."""
    return f"{TASK_PREFIX}{plugin}:{account_id}"


@dataclass(eq=False)
class HandlerRegistration:
    """One event handler a plugin added through its client."""

    callback: Callable[..., Any]  # the plugin's own
    builder: Any  # the Telethon event builder
    wrapper: Callable[[Any], Awaitable[None]]  # what the client actually holds


@dataclass(eq=False)
class LoadedPlugin:
    """One plugin loaded for one account."""

    info: PluginInfo
    account_id: int
    client: Any  # the account's real client
    config: dict[str, Any]  # as desired (before defaults)
    task_name: str
    registrations: list[HandlerRegistration] = field(default_factory=list)
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
