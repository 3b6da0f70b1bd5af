"""The board's Mini App as a native Telegram screen, in a real Chromium on a phone-sized screen: the primary
action on MainButton, BackButton for "back", Telegram's confirmation before closing an ad (and reopening one
closed by mistake), haptics on choices and outcomes, Telegram's header and background in the theme's colours;
and, outside Telegram, the page's own buttons instead. The Telegram stub records what the page asks and lets
the test press Telegram's buttons (see tests/support/webapp_stub/telegram-web-app.js)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select, update

from database.board_models import BoardAd, BoardInvite
from tests.support.webapp_stub import (
    LIGHT_THEME,
    THEMES,
    MiniApp,
    main_button,
    screenshot,
    sign_init_data,
    stub,
    tg_user,
)

AUTHOR = 7_200_000_101
GUEST = 7_200_000_102


def _ad_status(app: MiniApp, ad_id: str) -> str:
    with app.service.sessions() as session:
        return session.scalar(select(BoardAd.status).where(BoardAd.public_id == ad_id)) or ""


def _haptics(page: Any) -> list[tuple[str, list[Any]]]:
    names = ("impactOccurred", "notificationOccurred", "selectionChanged")
    return [(entry["name"], entry["args"]) for entry in stub(page, "log") if entry["name"] in names]


def test_main_button_publishes_and_back_button_returns(mini_app: MiniApp) -> None:
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    expect(page.locator("body")).to_have_class("tg-native")
    assert main_button(page)["isVisible"] is False  # browsing has no primary action
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is False

    page.click("#tab-post")
    assert (main_button(page)["isVisible"], main_button(page)["text"]) == (True, "Publish")
    expect(page.locator("#post-send")).to_be_hidden()  # the in-page button is only a fallback
    page.fill("#post-title", "Selling a guitar")
    page.fill("#post-text", "Acoustic, with a case.")
    page.select_option("#post-category", "sale")
    assert page.evaluate("Telegram.WebApp.isClosingConfirmationEnabled") is True  # a draft would be lost
    assert stub(page, "clickMainButton()") is True

    # Published: the ad opens, focus on its heading, BackButton shown, MainButton gone (nothing to send).
    expect(page.locator("#ad-title")).to_have_text("Selling a guitar")
    expect(page.locator("#ad-title")).to_be_focused()
    expect(page.locator("#notice")).to_have_text("Your ad is published.")
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is True
    assert main_button(page)["isVisible"] is False
    assert page.evaluate("Telegram.WebApp.isClosingConfirmationEnabled") is False
    assert ("notificationOccurred", ["success"]) in _haptics(page)
    expect(page.locator("#ad-back")).to_be_hidden()
    guest = mini_app.service.find_user(GUEST)
    assert guest is not None
    assert [ad.title for ad in mini_app.service.my_ads(guest)] == ["Selling a guitar"]

    # Back (Telegram's button): to one's own ads, where the new one is; BackButton hidden again.
    assert stub(page, "clickBackButton()") is True
    expect(page.locator("#view-mine")).to_be_visible()
    expect(page.locator("#my-ads-list .ad-card")).to_have_count(1)
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is False
    assert page.errors == []


def test_main_button_sends_the_first_message(mini_app: MiniApp) -> None:
    author = mini_app.service.user(AUTHOR, "ru")
    bike = mini_app.service.create_ad(author, "Велосипед", "Городской, почти новый.", "sale").id
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))

    page.locator("#ads-list .card-main").first.click()
    expect(page.locator("#ad-title")).to_be_focused()
    assert ("impactOccurred", ["light"]) in _haptics(page)
    assert (main_button(page)["isVisible"], main_button(page)["text"]) == (True, "Отправить")
    assert main_button(page)["color"] == THEMES["dark"]["button_color"]
    page.fill("#write-text", "Здравствуйте! Ещё продаёте?")
    assert stub(page, "clickMainButton()") is True

    expect(page.locator("#write-status")).to_contain_text("Сообщение отправлено")
    expect(page.locator("#write-status")).to_be_focused()
    assert main_button(page)["isVisible"] is False
    with mini_app.service.sessions() as session:
        invites = session.scalars(select(BoardInvite)).all()
        assert [(i.message, i.ad_id is not None) for i in invites] == [("Здравствуйте! Ещё продаёте?", True)]
    assert ("notificationOccurred", ["success"]) in _haptics(page)

    # Back: the list as it was, focus on the card the ad was opened from.
    stub(page, "clickBackButton()")
    card = page.locator(f"#ads-list .ad-card[data-id='{bike}'] .card-main")
    expect(card).to_be_focused()
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is False
    assert page.errors == []


def test_closing_asks_first_and_a_closed_ad_can_be_reopened(mini_app: MiniApp) -> None:
    guest = mini_app.service.user(GUEST, "en")
    ad = mini_app.service.create_ad(guest, "Selling a guitar", "Acoustic, with a case.", "sale").id
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    page.click("#tab-mine")
    card = page.locator(f"#my-ads-list .ad-card[data-id='{ad}']")

    # Cancelled in Telegram's popup: nothing happens.
    stub(page, "answerConfirm(false)")
    card.locator(".close-ad").click()
    page.wait_for_function("window.__telegramStub.confirms.length === 1")
    question = stub(page, "confirms")[0]
    assert "Selling a guitar" in question and "reopen it within 10\u00a0minutes" in question
    expect(card.locator(".close-ad")).to_be_visible()
    assert _ad_status(mini_app, ad) == "open"

    # Confirmed: closed, and Reopen is offered while the server allows it.
    stub(page, "answerConfirm(true)")
    card.locator(".close-ad").click()
    expect(card.locator(".reopen-ad")).to_be_visible()
    expect(card.locator(".reopen-ad")).to_be_focused()
    expect(page.locator("#notice")).to_have_text("The ad is closed.")
    assert _ad_status(mini_app, ad) == "closed"
    assert ("notificationOccurred", ["success"]) in _haptics(page)
    screenshot(page, "closed-mine-en-dark")

    card.locator(".reopen-ad").click()
    expect(card.locator(".close-ad")).to_be_visible()
    expect(page.locator("#notice")).to_have_text("The ad is open again.")
    assert _ad_status(mini_app, ad) == "open"

    # The same from the ad itself.
    card.locator(".card-main").click()
    page.click("#ad-close")
    expect(page.locator("#ad-reopen")).to_be_visible()
    expect(page.locator("#ad-reopen")).to_be_focused()
    expect(page.locator("#ad-status")).to_have_text("closed")
    expect(page.locator("#ad-reopen-hint")).to_contain_text("reopen it until")
    screenshot(page, "closed-ad-en-dark")
    page.click("#ad-reopen")
    expect(page.locator("#ad-close")).to_be_visible()
    assert _ad_status(mini_app, ad) == "open"
    assert stub(page, "count('showConfirm')") == 3
    assert page.errors == []


def test_reopen_goes_when_its_time_is_up(mini_app: MiniApp) -> None:
    guest = mini_app.service.user(GUEST, "en")
    ad = mini_app.service.create_ad(guest, "Selling a guitar", "Acoustic, with a case.", "sale").id
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    page.clock.install()  # the page's own clock, from now on under the test's control
    page.click("#tab-mine")
    card = page.locator(f"#my-ads-list .ad-card[data-id='{ad}']")
    card.locator(".close-ad").click()
    expect(card.locator(".reopen-ad")).to_be_visible()
    page.clock.fast_forward("09:00")
    expect(card.locator(".reopen-ad")).to_be_visible()
    page.clock.fast_forward("01:01")
    expect(card.locator(".reopen-ad")).to_be_hidden()
    expect(card.locator(".status-closed")).to_be_visible()


def test_reopening_too_late_is_refused_with_the_reason(mini_app: MiniApp) -> None:
    guest = mini_app.service.user(GUEST, "en")
    ad = mini_app.service.create_ad(guest, "Selling a guitar", "Acoustic, with a case.", "sale").id
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    page.click("#tab-mine")
    page.locator(f"#my-ads-list .ad-card[data-id='{ad}'] .card-main").click()
    page.click("#ad-close")
    expect(page.locator("#ad-reopen")).to_be_visible()

    # Meanwhile the window passes (the page still shows Reopen): the server refuses, the page says why.
    with mini_app.service.sessions.begin() as session:
        closed_at = session.scalar(select(BoardAd.closed_at).where(BoardAd.public_id == ad))
        assert closed_at is not None
        session.execute(update(BoardAd).where(BoardAd.public_id == ad).values(closed_at=closed_at - timedelta(hours=1)))
    page.click("#ad-reopen")
    expect(page.locator("#error-text")).not_to_be_empty()
    expect(page.locator("#error-retry")).to_be_hidden()  # a refusal, not a network failure: nothing to retry
    expect(page.locator("#ad-reopen")).to_be_hidden()  # the ad as the server now has it: no longer reopenable
    assert ("notificationOccurred", ["error"]) in _haptics(page)
    assert _ad_status(mini_app, ad) == "closed"


def test_haptics_on_choices(mini_app: MiniApp) -> None:
    author = mini_app.service.user(AUTHOR, "ru")
    mini_app.service.create_ad(author, "Велосипед", "Городской, почти новый.", "sale")
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    expect(page.locator("#ads-list .ad-card")).to_have_count(1)
    assert _haptics(page) == []

    page.click("#tab-mine")
    page.click("#tab-browse")
    page.select_option("#category-filter", "jobs")
    expect(page.locator("#ads-nothing")).to_be_visible()
    page.click("#ads-reset")
    page.locator("#ads-list .card-main").first.click()
    expect(page.locator("#ad-title")).to_be_focused()
    page.fill("#write-text", "   ")
    stub(page, "clickMainButton()")  # an empty message: refused
    expect(page.locator("#write-text-error")).to_be_visible()
    assert _haptics(page) == [
        ("selectionChanged", []),  # tab
        ("selectionChanged", []),  # tab
        ("selectionChanged", []),  # category
        ("selectionChanged", []),  # reset
        ("impactOccurred", ["light"]),  # a card opened
        ("notificationOccurred", ["error"]),  # refused
    ]


def test_header_and_background_follow_the_theme_and_its_changes(mini_app: MiniApp) -> None:
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")), theme="dark")
    dark = THEMES["dark"]
    assert stub(page, "args('setHeaderColor')") == [["secondary_bg_color"]]
    assert stub(page, "args('setBackgroundColor')") == [[dark["secondary_bg_color"]]]
    assert page.evaluate("Telegram.WebApp.isVerticalSwipesEnabled") is False  # scrolling never closes the app
    assert page.evaluate("document.documentElement.dataset.scheme") == "dark"

    # The user switches Telegram to its light theme: the page and Telegram's chrome follow at once.
    page.evaluate("([params]) => window.__telegramStub.changeTheme(params, 'light')", [LIGHT_THEME])
    expect(page.locator("html")).to_have_attribute("data-scheme", "light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(239, 239, 243)"
    assert stub(page, "args('setBackgroundColor')")[-1] == [LIGHT_THEME["secondary_bg_color"]]
    assert stub(page, "args('setHeaderColor')")[-1] == ["secondary_bg_color"]
    assert page.errors == []


def test_outside_telegram_the_page_has_its_own_buttons(mini_app: MiniApp) -> None:
    """A plain browser (telegram-web-app.js says the platform is "unknown"): no MainButton or BackButton to
    use, so the page shows its own Publish, Send and Back, and asks with the browser's confirm()."""
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")), theme="light", platform="unknown")
    expect(page.locator("body")).not_to_have_class("tg-native")
    page.click("#tab-post")
    expect(page.locator("#post-send")).to_be_visible()
    page.fill("#post-title", "Selling a guitar")
    page.fill("#post-text", "Acoustic, with a case.")
    page.select_option("#post-category", "sale")
    page.click("#post-send")
    expect(page.locator("#ad-title")).to_have_text("Selling a guitar")
    expect(page.locator("#ad-back")).to_be_visible()
    screenshot(page, "outside-telegram-ad-en-light")

    questions: list[str] = []

    def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.click("#ad-close")
    expect(page.locator("#ad-reopen")).to_be_visible()
    assert len(questions) == 1 and "Selling a guitar" in questions[0]
    page.click("#ad-back")
    expect(page.locator("#view-mine")).to_be_visible()
    assert stub(page, "count('MainButton.show')") == 0 and stub(page, "count('BackButton.show')") == 0
    assert stub(page, "count('showConfirm')") == 0
    assert page.errors == []
