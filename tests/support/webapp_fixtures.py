"""Fixtures of the Mini App's browser tests (registered in conftest): one Chromium per test module, and a board
served for real on 127.0.0.1 with a page of it open in that Chromium (`mini_app`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.webapp_stub import TIMEOUT_MS, MiniApp, launched_chromium, served_mini_app


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def mini_app(tmp_path: Path, browser: Any) -> Iterator[MiniApp]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with served_mini_app(tmp_path / "board.db", browser) as app:
        yield app
