"""What handlers get as `fleet`: the fleet and accounts services, called off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from backend.accounts_service import AccountService
from backend.fleet import FleetService

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class BotServices:
    workers: FleetService
    accounts: AccountService

    async def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking service call (Redis, the database, Celery) in a thread."""
        return await asyncio.to_thread(function, *args, **kwargs)
