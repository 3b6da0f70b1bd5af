"""The worker's event-loop threads: each runs one asyncio loop hosting many clients; and the open files they need
(a client is a socket: `open_files_for`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)


T = TypeVar("T")
FILES_BESIDES_CLIENTS = 1000  # Redis, Celery, logs, operations' and logins' own connections


def open_files_for(clients: int) -> int:
    """Raise this process's open-files limit (the soft one, up to the hard one) to what `clients` connections and
    the rest need; warn when the hard limit is lower. Returns the limit now."""
    wanted = clients + FILES_BESIDES_CLIENTS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-files limit to %d (%s)", soft, error)
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "the open-files limit is %d: %d clients need about %d (raise LimitNOFILE or `ulimit -n`, or lower "
            "WORKER_MAX_ACCOUNTS)",
            soft,
            clients,
            wanted,
        )
    return int(soft)


# --- loops ------------------------------------------------------------------------------------------------


class LoopThread:
    """A thread running one asyncio event loop that hosts many clients."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = asyncio.new_event_loop()
        self.clients = 0
        self._thread = threading.Thread(target=self._run, name=f"telethon-loop-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
