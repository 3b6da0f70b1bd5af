"""What the board's Mini App tests share: a stub of Telegram's `telegram-web-app.js`, initData signed the way
Telegram signs it, and the board's aiohttp app served for real on 127.0.0.1 from a background event loop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web
from sqlalchemy.engine import Engine

from board.service import BoardService
from board.web.serving import make_runner
from common.crypto import SecretBox
from config import BoardLimits
from database.engine import open_database
from tests.support.stack import TEST_SECRET_KEY

STUB_SCRIPT = Path(__file__).resolve().parent / "telegram-web-app.js"
BOT_TOKEN = "123456789:AAH-board-test-token_0123456789abcdef"
THEME = {
    "bg_color": "#17212b",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#232e3c",
}


def sign_init_data(
    user: dict[str, Any] | None, *, bot_token: str = BOT_TOKEN, auth_date: int | None = None, **extra: str
) -> str:
    """initData for `user` as Telegram would hand it to the Mini App of the bot `bot_token` (spec: Web Apps,
    "Validating data received via the Mini App"): secret = HMAC_SHA256(key="WebAppData", msg=bot_token),
    hash = hex HMAC_SHA256(key=secret, msg=the sorted key=value lines)."""
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        **extra,
    }
    if user is not None:
        fields["user"] = json.dumps(user, separators=(",", ":"), ensure_ascii=False)
    check_string = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields)


def tg_user(tg_id: int, language_code: str = "en", first_name: str = "Test") -> dict[str, Any]:
    return {"id": tg_id, "first_name": first_name, "username": f"user{tg_id}", "language_code": language_code}


def board_service(url: str, limits: BoardLimits | None = None) -> tuple[Engine, BoardService]:
    engine, sessions = open_database(url)
    return engine, BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits or BoardLimits())


class WakeRecorder:
    """An `on_enqueued` that counts how often the app said it queued something for the bot's outbox."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


class ServedBoard:
    """An aiohttp application served on a free 127.0.0.1 port by an event loop in a background thread."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="served-board", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def run(self, coroutine: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> ServedBoard:
        self._thread.start()

        async def serve() -> str:
            self._runner = make_runner(self._make_app())
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"

        self.url = self.run(serve())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> ServedBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the page in a real Chromium (Debian's, driven by Playwright) ---------------------------------------------

DARK_THEME = THEME
LIGHT_THEME = {  # Telegram's default light palette
    "bg_color": "#ffffff",
    "text_color": "#000000",
    "hint_color": "#999999",
    "link_color": "#2481cc",
    "button_color": "#2481cc",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#efeff3",
    "section_bg_color": "#ffffff",
    "accent_text_color": "#2481cc",
    "subtitle_text_color": "#6d6d72",
    "destructive_text_color": "#e53935",
}
THEMES = {"light": LIGHT_THEME, "dark": DARK_THEME}
CHROMIUM = Path(os.environ.get("BOARD_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 90_000  # generous: a busy 2-core machine, a cold browser
CHROMIUM_FLAGS = [
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
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
REPO = Path(__file__).resolve().parents[3]
WEBAPP_DIR = REPO / "board" / "webapp"
_LOCAL_ASSET = re.compile(r"""(?:src|href)="(/[A-Za-z0-9_.-]+\.(?:js|css))\"""")


def chromium_executable() -> Path | None:
    """Debian's Chromium (`BOARD_CHROMIUM` to use another), or None when it is not installed."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def page_assets(webapp_dir: Path = WEBAPP_DIR) -> list[str]:
    """The page's own scripts and stylesheets, as index.html names them ("/app.js", ...)."""
    return _LOCAL_ASSET.findall((webapp_dir / "index.html").read_text(encoding="utf-8"))


def board_app(service: BoardService, **options: Any) -> web.Application:
    """The board's real app with the Telegram stub. Page assets the app does not route yet are served here, so
    the page can be tested while its routes land (the assets test in test_board_webapp.py fails meanwhile)."""
    from board.web import create_web_app

    app = create_web_app(service, BOT_TOKEN, telegram_script=STUB_SCRIPT, **options)
    routed = {getattr(r.get_info(), "get", lambda _: None)("path") for r in app.router.resources()}
    for asset in page_assets():
        if asset not in routed:
            app.router.add_get(asset, _file_handler(WEBAPP_DIR / asset.lstrip("/")))
    return app


def _file_handler(path: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path)

    return serve


def artifacts_dir() -> Path:
    """Where screenshots are kept: `BOARD_ARTIFACTS`, else <repo>/.artifacts/board-webapp/."""
    path = Path(os.environ.get("BOARD_ARTIFACTS") or REPO / ".artifacts" / "board-webapp")
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch_fragment(init_data: str, theme: str = "dark", platform: str = "android", version: str = "8.0") -> str:
    """The URL fragment Telegram opens a Mini App with: signed initData, theme, colour scheme, platform."""
    return (
        f"tgWebAppData={quote(init_data, safe='')}&tgWebAppVersion={version}&tgWebAppPlatform={platform}"
        f"&tgWebAppThemeParams={quote(json.dumps(THEMES[theme]), safe='')}&tgWebAppColorScheme={theme}"
    )


class MiniApp:
    """A served board and a Chromium: each `open` is a fresh phone-sized context that may reach only 127.0.0.1
    (what it tried elsewhere is in `outside`)."""

    def __init__(self, served: ServedBoard, service: BoardService, browser: Any) -> None:
        self.served = served
        self.service = service
        self.browser = browser
        self.contexts: list[Any] = []
        self.outside: list[str] = []

    def _only_loopback(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.fallback()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, init_data: str, *, theme: str = "dark", platform: str = "android", wait_ready: bool = True) -> Any:
        context = self.browser.new_context(
            **PHONE, color_scheme=theme, locale="en-US", service_workers="block", reduced_motion="reduce"
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.route("**/*", self._only_loopback)
        self.contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        page.goto(f"{self.served.url}/#{launch_fragment(init_data, theme, platform)}")
        if wait_ready:
            page.wait_for_selector("body[data-ready='true']", state="attached")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG of the screen as it is, kept in `artifacts_dir()`."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """One headless Chromium (for a whole test module: starting it is the slow part), or the test is skipped."""
    import pytest
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is missing at {CHROMIUM} in CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_FLAGS, timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def served_mini_app(database: Path, browser: Any, limits: BoardLimits | None = None) -> Iterator[MiniApp]:
    """A fresh SQLite board served on 127.0.0.1 and pages opened on it in `browser`; none may leave 127.0.0.1."""
    engine, service = board_service(f"sqlite:///{database}", limits)
    served = ServedBoard(lambda: board_app(service)).start()
    app = MiniApp(served, service, browser)
    try:
        yield app
    finally:
        app.close()
        served.stop()
        engine.dispose()
    assert app.outside == [], f"the page tried to leave 127.0.0.1: {app.outside}"


# ---- what a page offers a finger and a screen reader ----------------------------------------------------------

_CONTROL_ROLES = ("button", "textbox", "searchbox", "combobox", "tab", "link", "checkbox", "radio", "spinbutton")
_SNAPSHOT_LINE = re.compile(r'^\s*- (?P<role>[a-z]+)(?: "(?P<name>(?:[^"\\]|\\.)*)")?')


def control_names(page: Any) -> list[tuple[str, str]]:
    """(role, accessible name) of every control a screen reader finds on the page now, as Playwright computes
    them (the accessible-name algorithm over the ARIA tree: labels, aria-label(ledby), content)."""
    controls = []
    for line in page.locator("body").aria_snapshot().splitlines():
        match = _SNAPSHOT_LINE.match(line)
        if match and match["role"] in _CONTROL_ROLES:
            controls.append((match["role"], (match["name"] or "").strip()))
    return controls


_SMALL_TARGETS_JS = """(min) => Array.from(document.querySelectorAll(
    "button, input, select, textarea, a[href], [role=button], [role=tab]"))
  .filter((node) => node.checkVisibility())
  .map((node) => ({id: node.id || node.className, box: node.getBoundingClientRect()}))
  .filter(({box}) => box.height < min - 0.5 || box.width < min - 0.5)
  .map(({id, box}) => `${id}: ${Math.round(box.width)}x${Math.round(box.height)}`)"""


def small_tap_targets(page: Any, minimum: float = 44.0) -> list[str]:
    """Visible controls smaller than `minimum` CSS pixels either way (Apple's and WCAG's 44 px target)."""
    return page.evaluate(_SMALL_TARGETS_JS, minimum)


def stub(page: Any, expression: str) -> Any:
    """Evaluate `expression` on the Telegram stub's record: `stub(page, "clickMainButton()")`, `"calls"`, ..."""
    return page.evaluate(f"window.__telegramStub.{expression}")


def main_button(page: Any) -> dict[str, Any]:
    """Telegram's MainButton as the page left it: isVisible, isActive, isProgressVisible, text, colours."""
    return page.evaluate("({...Telegram.WebApp.MainButton})")


def establish(service: BoardService, tg_id: int, days: int = 30) -> None:
    """Make a board user `days` old (a report from an account under a week old weighs less)."""
    from datetime import timedelta

    from sqlalchemy import update

    from database.board_models import BoardUser

    user = service.user(tg_id)
    with service.sessions.begin() as session:
        session.execute(
            update(BoardUser).where(BoardUser.id == user.id).values(created_at=service.clock() - timedelta(days=days))
        )
