"""The board's Mini App in a real headless Chromium (Debian's, driven by Playwright) on a phone-sized screen,
against the real aiohttp server on 127.0.0.1 and a real SQLite database. Telegram's script is replaced by a stub
that hands the page initData the test signed (through the URL fragment, as Telegram does) and records what the
page asks of Telegram; the browser may reach nothing but 127.0.0.1. Screenshots of every screen, in both themes
and both languages, are kept in `BOARD_ARTIFACTS` (default <repo>/.artifacts/board-webapp/).

More: test_board_webapp_native.py (Telegram's buttons, popups, haptics, theme), test_board_webapp_states.py
(loading, errors, retry, counters, pager, refusals, keyboard)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from board.web import create_web_app
from database.board_models import BoardAd, BoardInvite, BoardReport, BoardUser
from tests.support.webapp_stub import (
    BOT_TOKEN,
    THEMES,
    MiniApp,
    ServedBoard,
    board_service,
    control_names,
    main_button,
    page_assets,
    screenshot,
    sign_init_data,
    small_tap_targets,
    stub,
    tg_user,
)

AUTHOR = 7_200_000_001
GUEST = 7_200_000_002
SEEDED_TITLES = ("Велосипед", "Ищу репетитора")
CYRILLIC = re.compile(r"[А-Яа-яЁё]")

# What each language's page must say (a few landmarks; the rest is checked for being in the language at all).
SAYS = {
    "ru": {
        "browse": "Объявления",
        "send": "Отправить",
        "publish": "Опубликовать",
        "count": "3 объявления",
        "nothing": "Ничего не найдено.",
        "reset": "Сбросить фильтры",
        "over": "105 / 100 · лишних: 5 символов",
        "text_empty": "Напишите текст объявления.",
        "unauthorized": "Откройте доску из Telegram: данные входа не подтверждены или устарели.",
    },
    "en": {
        "browse": "Ads",
        "send": "Send",
        "publish": "Publish",
        "count": "3 ads",
        "nothing": "Nothing found.",
        "reset": "Reset the filters",
        "over": "105 / 100 · 5 characters too many",
        "text_empty": "Write the ad's text.",
        "unauthorized": "Open the board from Telegram: the sign-in data is missing, forged or stale.",
    },
}


def _count(app: MiniApp, model: type) -> int:
    with app.service.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _seed(app: MiniApp) -> list[str]:
    author = app.service.user(AUTHOR, "ru")
    return [
        app.service.create_ad(author, "Велосипед", "Городской велосипед, почти новый.", "sale").id,
        app.service.create_ad(author, "Ищу репетитора", "Английский, два раза в неделю.", "jobs").id,
    ]


def _check_screen(page: Any, lang: str, name: str) -> None:
    """Every control has a name in the user's language (ads' own titles aside), is at least 44 px either way,
    and the screen is kept as a screenshot."""
    for role, label in control_names(page):
        assert label, f"{name}: a {role} without an accessible name"
        if label in SEEDED_TITLES or label.startswith("Selling"):
            continue  # user content
        in_russian = bool(CYRILLIC.search(label))
        assert in_russian == (lang == "ru"), f"{name}: the {role} '{label}' is not in {lang}"
    assert small_tap_targets(page) == [], f"{name}: tap targets under 44 px"
    assert page.errors == [], page.errors


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("lang", ["ru", "en"])
def test_every_screen_in_each_theme_and_language(mini_app: MiniApp, theme: str, lang: str) -> None:
    _seed(mini_app)
    says = SAYS[lang]
    own = mini_app.service.create_ad(mini_app.service.user(GUEST, lang), "Selling a guitar", "With a case.", "sale")
    page = mini_app.open(sign_init_data(tg_user(GUEST, lang)), theme=theme)
    palette = THEMES[theme]
    tag = f"{lang}-{theme}"

    # The theme: the page's colours are Telegram's, and Telegram's header and background match the page.
    assert page.evaluate("document.documentElement.dataset.scheme") == theme
    page_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert page_bg == _rgb(palette["secondary_bg_color"])
    assert page.evaluate("getComputedStyle(document.body).color") == _rgb(palette["text_color"])
    assert stub(page, "args('setHeaderColor')") == [["secondary_bg_color"]]
    assert stub(page, "args('setBackgroundColor')") == [[palette["secondary_bg_color"]]]

    # Browse.
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(3)
    expect(page.locator("#tab-browse")).to_have_text(says["browse"])
    expect(page.locator("#page-info")).to_contain_text(says["count"])
    assert main_button(page)["isVisible"] is False
    _check_screen(page, lang, "browse")
    screenshot(page, f"browse-{tag}")

    # Nothing found, with a way back.
    page.fill("#search", "самокат")
    page.keyboard.press("Enter")
    expect(page.locator("#ads-nothing")).to_be_visible()
    expect(page.locator("#ads-nothing")).to_contain_text(says["nothing"])
    _check_screen(page, lang, "nothing-found")
    screenshot(page, f"nothing-found-{tag}")
    page.get_by_role("button", name=says["reset"]).click()
    expect(cards).to_have_count(3)

    # Someone else's ad: MainButton sends the first message; the report form opens under it.
    cards.filter(has_text="Велосипед").click()
    expect(page.locator("#ad-title")).to_have_text("Велосипед")
    expect(page.locator("#ad-title")).to_be_focused()
    assert (main_button(page)["isVisible"], main_button(page)["text"]) == (True, says["send"])
    page.click("#report-open")
    expect(page.locator("#report-reason")).to_be_focused()
    _check_screen(page, lang, "ad")
    screenshot(page, f"ad-{tag}")
    stub(page, "clickBackButton()")
    expect(page.locator("#view-browse")).to_be_visible()

    # Post: a counter over the limit, then a refusal shown next to its field.
    page.click("#tab-post")
    assert (main_button(page)["isVisible"], main_button(page)["text"]) == (True, says["publish"])
    page.fill("#post-title", "x" * 105)
    expect(page.locator("#post-title-count")).to_have_text(says["over"])
    assert main_button(page)["isActive"] is False
    page.fill("#post-title", "A tandem bicycle")
    page.select_option("#post-category", "sale")
    assert stub(page, "clickMainButton()") is True
    expect(page.locator("#post-text-error")).to_have_text(says["text_empty"])
    _check_screen(page, lang, "post")
    screenshot(page, f"post-{tag}")

    # My ads: one's own, with Close.
    page.click("#tab-mine")
    mine = page.locator("#my-ads-list .ad-card")
    expect(mine).to_have_count(1)
    expect(mine.first).to_have_attribute("data-id", own.id)
    expect(mine.first.locator(".close-ad")).to_be_visible()
    _check_screen(page, lang, "mine")
    screenshot(page, f"mine-{tag}")

    # Own ad opened: no MainButton (nothing to send), Close on the page.
    mine.first.locator(".card-main").click()
    expect(page.locator("#ad-close")).to_be_visible()
    assert main_button(page)["isVisible"] is False
    _check_screen(page, lang, "own-ad")
    screenshot(page, f"own-ad-{tag}")

    # Forged initData: the page says so and nothing can be used.
    forged = mini_app.open(sign_init_data(tg_user(GUEST, lang), bot_token="987654321:not-this-bots-token"), theme=theme)
    expect(forged.locator("#error-text")).to_have_text(says["unauthorized"])
    screenshot(forged, f"unauthorized-{tag}")


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({r}, {g}, {b})"


def test_browse_post_write_and_report_in_chromium(mini_app: MiniApp) -> None:
    bike, tutor = _seed(mini_app)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))

    # Telegram's side: ready() and expand() were called; the page is English (initDataUnsafe.user.language_code).
    calls = stub(page, "calls")
    assert "ready" in calls and "expand" in calls
    expect(page.locator("#tab-browse")).to_have_text("Ads")

    # Browse: the seeded ads, newest first; filter by category and by text (case and ё/е folded by the server).
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(2)
    expect(cards.locator(".card-title")).to_have_text(["Ищу репетитора", "Велосипед"])
    page.select_option("#category-filter", "sale")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-id", bike)
    page.select_option("#category-filter", "")
    page.fill("#search", "АНГЛИЙСКИЙ")
    page.click("#search-go")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-id", tutor)
    page.fill("#search", "")
    page.click("#search-go")
    expect(cards).to_have_count(2)

    # Post an ad through MainButton; the limits are shown.
    page.click("#tab-post")
    expect(page.locator("#limits")).to_contain_text("100 characters")
    expect(page.locator("#post-send")).to_be_hidden()  # inside Telegram the primary action is MainButton
    page.fill("#post-title", "Selling a guitar")
    page.fill("#post-text", "Acoustic, with a case.")
    page.select_option("#post-category", "sale")
    stub(page, "clickMainButton()")
    expect(page.locator("#ad-title")).to_have_text("Selling a guitar")
    expect(page.locator("#ad-own")).to_be_visible()
    guest = mini_app.service.find_user(GUEST)
    assert guest is not None
    assert [ad.title for ad in mini_app.service.my_ads(guest)] == ["Selling a guitar"]

    # Write to another user's ad: one first message (it waits in the database), then writing is over.
    stub(page, "clickBackButton()")  # back to where a new ad goes: one's own ads
    expect(page.locator("#view-mine")).to_be_visible()
    page.click("#tab-browse")
    cards.and_(page.locator(f"[data-id='{bike}']")).click()
    expect(page.locator("#ad-title")).to_have_text("Велосипед")
    page.fill("#write-text", "Hello! Is the bike still available?")
    stub(page, "clickMainButton()")
    expect(page.locator("#write-status")).to_contain_text("Message sent")
    expect(page.locator("#write-form")).to_be_hidden()
    assert main_button(page)["isVisible"] is False
    with mini_app.service.sessions() as session:
        assert [i.message for i in session.scalars(select(BoardInvite))] == ["Hello! Is the bike still available?"]
    # Opened again, the ad remembers it was written to.
    stub(page, "clickBackButton()")
    cards.and_(page.locator(f"[data-id='{bike}']")).click()
    expect(page.locator("#write-status")).to_have_text("You have already written to this ad's author.")
    expect(page.locator("#write-form")).to_be_hidden()

    # Report it.
    page.click("#report-open")
    page.fill("#report-reason", "Looks like a scam")
    page.click("#report-send")
    expect(page.locator("#report-status")).to_be_visible()
    assert [r.reason for r in mini_app.service.report_queue()] == ["Looks like a scam"]
    assert page.errors == []


def test_forged_init_data_disables_everything_and_writes_nothing(mini_app: MiniApp) -> None:
    bike, _ = _seed(mini_app)
    users, ads = _count(mini_app, BoardUser), _count(mini_app, BoardAd)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru"), bot_token="987654321:not-this-bots-token"))

    expected = SAYS["ru"]["unauthorized"]
    expect(page.locator("#error-text")).to_have_text(expected)
    expect(page.locator("#error-retry")).to_be_hidden()
    expect(page.locator("#tab-browse")).to_have_text("Объявления")  # Russian, as initData claims
    assert page.locator("body").get_attribute("data-locked") == "true"
    expect(page.locator("#ads-list .ad-card")).to_have_count(0)
    # Every control is disabled, including the tabs; Telegram's buttons are hidden.
    enabled = page.evaluate(
        """Array.from(document.querySelectorAll('button, input, select, textarea'))
             .filter((node) => !node.disabled).map((node) => node.id)"""
    )
    assert enabled == []
    for tab in ("#tab-browse", "#tab-mine", "#tab-post"):
        expect(page.locator(tab)).to_be_disabled()
    assert main_button(page)["isVisible"] is False
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is False
    assert stub(page, "clickMainButton()") is False

    # The forged page cannot write to an ad either (call the API the way the page does).
    status = page.evaluate(
        """async (id) => (await fetch('/api/ads/' + id + '/invite', {method: 'POST',
               headers: {Authorization: 'tma ' + Telegram.WebApp.initData, 'Content-Type': 'application/json'},
               body: JSON.stringify({message: 'hi'})})).status""",
        bike,
    )
    assert status == 401
    assert (_count(mini_app, BoardUser), _count(mini_app, BoardAd)) == (users, ads)
    assert _count(mini_app, BoardInvite) == 0 and _count(mini_app, BoardReport) == 0
    assert mini_app.service.find_user(GUEST) is None
    assert page.errors == []


def test_the_server_serves_every_file_the_page_loads(tmp_path: Path) -> None:
    """The page's scripts and stylesheet come from the board's own app (not from the tests' stand-in routes)."""
    engine, service = board_service(f"sqlite:///{tmp_path / 'board.db'}")
    try:
        served = ServedBoard(lambda: create_web_app(service, BOT_TOKEN)).start()
        try:
            missing = [asset for asset in page_assets() if _status(served, asset) != 200]
        finally:
            served.stop()
    finally:
        engine.dispose()
    assert missing == [], f"board/web/api.py does not serve {missing}"


def _status(served: ServedBoard, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(served.url + path, timeout=30) as response:  # noqa: S310 (http://127.0.0.1)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
