"""The board's Mini App in a real headless Chromium (Debian's, driven by Playwright), against the real aiohttp
server on 127.0.0.1 and a real SQLite database. Telegram's script is replaced by a stub that hands the page
initData the test signed (through the URL fragment, as Telegram does); the browser may reach nothing but
127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from board.service import BoardService
from board.web import create_web_app
from database.board_models import BoardAd, BoardInvite, BoardReport, BoardUser
from tests.support.webapp_stub import (
    BOT_TOKEN,
    STUB_SCRIPT,
    THEME,
    InviteRecorder,
    ServedBoard,
    board_service,
    sign_init_data,
    tg_user,
)

CHROMIUM = Path(os.environ.get("BOARD_CHROMIUM", "/usr/bin/chromium"))
AUTHOR = 7_200_000_001
GUEST = 7_200_000_002
TIMEOUT_MS = 90_000  # generous: a busy 2-core machine, a cold browser
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def _chromium_or_skip() -> Path:
    if CHROMIUM.exists() or shutil.which("chromium"):
        return CHROMIUM if CHROMIUM.exists() else Path(shutil.which("chromium") or CHROMIUM)
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is missing at {CHROMIUM} in CI (.ci/run installs Debian's chromium)")
    pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")


def _count(service: BoardService, model: type) -> int:
    with service.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


class MiniApp:
    """A served board, a Chromium context, and the requests the page made that were not to 127.0.0.1."""

    def __init__(self, served: ServedBoard, service: BoardService, delivered: InviteRecorder, context: Any) -> None:
        self.served = served
        self.service = service
        self.delivered = delivered
        self.context = context
        self.outside: list[str] = []
        context.route("**/*", self._only_loopback)

    def _only_loopback(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, init_data: str) -> Any:
        page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors  # type: ignore[attr-defined]
        fragment = (
            f"tgWebAppData={quote(init_data, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=android"
            f"&tgWebAppThemeParams={quote(json.dumps(THEME), safe='')}"
        )
        page.goto(f"{self.served.url}/#{fragment}")
        page.wait_for_selector("body[data-ready='true']", state="attached")
        return page


@pytest.fixture
def mini_app(tmp_path: Path) -> Iterator[MiniApp]:
    executable = _chromium_or_skip()

    engine, service = board_service(f"sqlite:///{tmp_path / 'board.db'}")
    delivered = InviteRecorder()
    served = ServedBoard(
        lambda: create_web_app(service, BOT_TOKEN, deliver_invite=delivered, telegram_script=STUB_SCRIPT)
    ).start()
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=str(executable),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                locale="en-US",
                timeout=TIMEOUT_MS,
            )
            app = MiniApp(served, service, delivered, context)
            try:
                yield app
            finally:
                context.close()
        assert app.outside == [], f"the page tried to leave 127.0.0.1: {app.outside}"
    finally:
        served.stop()
        engine.dispose()


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    artifacts = os.environ.get("BOARD_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    return path


def _seed(service: BoardService) -> list[str]:
    author = service.user(AUTHOR, "ru")
    return [
        service.create_ad(author, "Велосипед", "Городской велосипед, почти новый.", "sale").id,
        service.create_ad(author, "Ищу репетитора", "Английский, два раза в неделю.", "jobs").id,
    ]


def test_browse_post_write_and_report_in_chromium(mini_app: MiniApp, tmp_path: Path) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    bike, tutor = _seed(mini_app.service)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))

    # Telegram's side: ready() and expand() were called; the theme colours are applied.
    calls = page.evaluate("window.__telegramStub.calls")
    assert "ready" in calls and "expand" in calls
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(35, 46, 60)"
    assert page.locator("#tab-browse").inner_text() == "Ads"  # English, from initDataUnsafe.user.language_code

    # Browse: the seeded ads, newest first; filter by category and by text.
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(2)
    assert [cards.nth(i).locator(".card-title").inner_text() for i in range(2)] == ["Ищу репетитора", "Велосипед"]
    page.select_option("#category-filter", "sale")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-id", bike)
    page.select_option("#category-filter", "")
    page.fill("#search", "английский")
    page.click("#search-form button[type=submit]")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-id", tutor)
    page.fill("#search", "")
    page.click("#search-form button[type=submit]")
    expect(cards).to_have_count(2)
    _screenshot(page, tmp_path, "board.png")

    # Post an ad; the limits are shown.
    page.click("#tab-post")
    assert "100" in page.locator("#limits").inner_text() and "3" in page.locator("#limits").inner_text()
    page.fill("#post-title", "Selling a guitar")
    page.fill("#post-text", "Acoustic, with a case.")
    page.select_option("#post-category", "sale")
    page.click("#post-send")
    page.wait_for_selector("#view-ad:not([hidden])")
    assert page.locator("#ad-title").inner_text() == "Selling a guitar"
    assert page.locator("#ad-own").is_visible()
    guest = mini_app.service.find_user(GUEST)
    assert guest is not None
    assert [ad.title for ad in mini_app.service.my_ads(guest)] == ["Selling a guitar"]
    # A server refusal is shown as the API words it.
    page.click("#tab-post")
    page.fill("#post-title", "x")
    page.fill("#post-text", "   ")
    page.click("#post-send")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == "Write the ad's text."

    # Write to another user's ad: one first message, then writing is disabled.
    page.click("#tab-browse")
    page.locator(f"#ads-list .ad-card[data-id='{bike}']").click()
    page.wait_for_selector("#view-ad:not([hidden])")
    assert page.locator("#ad-title").inner_text() == "Велосипед"
    page.fill("#write-text", "Hello! Is the bike still available?")
    page.click("#write-send")
    page.wait_for_selector("#write-status:not([hidden])")
    assert "sent" in page.locator("#write-status").inner_text().lower()
    assert page.locator("#write").is_hidden() and page.locator("#write-text").is_disabled()
    _screenshot(page, tmp_path, "board-ad.png")
    with mini_app.service.sessions() as session:
        invites = session.scalars(select(BoardInvite)).all()
        assert [invite.message for invite in invites] == ["Hello! Is the bike still available?"]
    assert [(s.ad_title, s.author.tg_id) for s in mini_app.delivered.sent] == [("Велосипед", AUTHOR)]
    # Opened again, the ad remembers it was written to.
    page.click("#ad-back")
    page.locator(f"#ads-list .ad-card[data-id='{bike}']").click()
    page.wait_for_selector("#write-status:not([hidden])")
    assert page.locator("#write").is_hidden()

    # Report it.
    page.click("#report-open")
    page.fill("#report-reason", "Looks like a scam")
    page.click("#report-send")
    page.wait_for_selector("#report-status:not([hidden])")
    assert [r.reason for r in mini_app.service.report_queue()] == ["Looks like a scam"]

    # My ads: close the one posted above.
    page.click("#tab-mine")
    page.wait_for_selector("#my-ads-list .ad-card")
    page.locator("#my-ads-list .close-ad").first.click()
    page.wait_for_selector("#my-ads-list .status-closed")
    assert [ad.status for ad in mini_app.service.my_ads(guest)] == ["closed"]
    assert page.errors == []  # type: ignore[attr-defined]
    _screenshot(page, tmp_path, "board-my-ads.png")


def test_forged_init_data_shows_unauthorized_and_writes_nothing(mini_app: MiniApp, tmp_path: Path) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    bike, _ = _seed(mini_app.service)
    users, ads = _count(mini_app.service, BoardUser), _count(mini_app.service, BoardAd)
    forged = sign_init_data(tg_user(GUEST, "ru"), bot_token="987654321:not-this-bots-token")
    page = mini_app.open(forged)

    page.wait_for_selector("#error:not([hidden])")
    expected = "Откройте доску из Telegram: данные входа не подтверждены или устарели."
    assert page.locator("#error").inner_text() == expected
    assert page.locator("#tab-browse").inner_text() == "Объявления"  # Russian
    assert page.locator("#ads-list .ad-card").count() == 0

    page.click("#tab-post")
    page.fill("#post-title", "Forged")
    page.fill("#post-text", "Should never be stored.")
    page.click("#post-send")
    expect(page.locator("#error")).to_have_text(expected)
    _screenshot(page, tmp_path, "board-unauthorized.png")

    # The forged page cannot write to an ad either (call the API the way the page does).
    status = page.evaluate(
        """async (id) => (await fetch('/api/ads/' + id + '/invite', {method: 'POST',
               headers: {Authorization: 'tma ' + Telegram.WebApp.initData, 'Content-Type': 'application/json'},
               body: JSON.stringify({message: 'hi'})})).status""",
        bike,
    )
    assert status == 401
    assert (_count(mini_app.service, BoardUser), _count(mini_app.service, BoardAd)) == (users, ads)
    assert _count(mini_app.service, BoardInvite) == 0 and _count(mini_app.service, BoardReport) == 0
    assert mini_app.service.find_user(GUEST) is None
    assert mini_app.delivered.sent == []
