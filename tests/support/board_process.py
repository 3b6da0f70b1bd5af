"""The real `run_board.py` process for end-to-end tests: started as the README starts it, against the Bot API
stand-in on 127.0.0.1 (which enforces Telegram's flood limits), with real Redis and SQLite; people talk to it
through the stand-in's update queue."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from board.service import BoardService
from common.crypto import SecretBox
from config import BoardLimits
from database.engine import open_database
from scripts.embedded_redis import free_port
from tests.support.board_harness import Person
from tests.support.bot_api import TOKEN, BotApiStandIn, FloodLimits
from tests.support.stack import TEST_SECRET_KEY, Stack, wait_until

WEBAPP = "https://board.example/"
WAIT = 60.0  # generous: a busy two-core machine may be slow, never wrong


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    stand_in = BotApiStandIn(limits=FloodLimits()).start()  # Telegram's flood limits, enforced
    yield stand_in
    stand_in.stop()


@pytest.fixture
def service(sqlite_url: str) -> Iterator[BoardService]:
    engine: Engine
    engine, sessions = open_database(sqlite_url)
    yield BoardService(sessions, SecretBox(TEST_SECRET_KEY), BoardLimits())
    engine.dispose()


class Board:
    """The running board process and the people talking to it."""

    def __init__(self, stack: Stack, api: BotApiStandIn, service: BoardService) -> None:
        self.stack = stack
        self.api = api
        self.core = api.core
        self.service = service
        self.port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        mark = len(self.core.calls)
        process = self.stack.spawn(
            "run_board.py",
            env={
                "BOARD_BOT_TOKEN": TOKEN,
                "TG_API_SERVER": self.api.url,
                "BOARD_LISTEN": f"127.0.0.1:{self.port}",
                "BOARD_WEBAPP_URL": WEBAPP,
            },
            log_name="board",
        )
        self.processes.append(process)
        self.core.wait_for(lambda c: c.method == "setChatMenuButton", WAIT, after=mark)
        wait_until(self._listening, WAIT, interval=0.2, message="the board's web app listens")
        return process

    def _listening(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            return False

    def person(self, user_id: int, language: str = "ru") -> Person:
        return Person(self.core, self.core.push, self.service, user_id, language)

    def settled(self) -> None:
        """Every queued update was fetched and its offset confirmed (a kill now loses and repeats nothing)."""
        wait_until(lambda: not self.core.updates, WAIT, message="updates confirmed")

    def api_invite(self, sender: int, ad_id: str, message: str, language: str = "ru") -> tuple[int, dict[str, Any]]:
        """A first message through the Mini App's HTTP API, signed as Telegram signs initData."""
        from tests.support.webapp_stub import sign_init_data, tg_user

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/ads/{ad_id}/invite",
            data=json.dumps({"message": message}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "tma " + sign_init_data(tg_user(sender, language), bot_token=TOKEN),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def logs(self) -> str:
        return "".join(self.stack.log_of(p) for p in self.processes)


@pytest.fixture
def board(stack: Stack, api: BotApiStandIn, service: BoardService) -> Board:
    return Board(stack, api, service)
