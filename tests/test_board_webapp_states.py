"""The board's Mini App's states, in a real Chromium on a phone-sized screen against the real server: skeletons
while lists load, refusals next to the field at fault (cleared on the next input), Retry after a network
failure, live length counters that never cut, a pager that never wraps, "nothing found" with a reset, a refused
first message that disables the form with the reason, Russian plurals, and the keyboard (cards, tabs, focus)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect
from sqlalchemy import func, select

from board.service import PER_PAGE
from board.text import clean
from database.board_models import BoardInvite
from tests.support.webapp_stub import (
    MiniApp,
    main_button,
    screenshot,
    sign_init_data,
    stub,
    tg_user,
)

AUTHOR = 7_200_000_201
GUEST = 7_200_000_202
NBSP = "\u00a0"
WORDS = (
    "велосипед самокат гитара пианино диван стол кресло ноутбук телефон камера палатка лыжи коньки холодильник "
    "чайник микроволновка книга пальто куртка сапоги рюкзак часы лампа ковёр шкаф"
).split()


def _seed(app: MiniApp, count: int = 2) -> list[str]:
    """`count` ads, newest last: the first is in housing, the next three in jobs, the rest for sale; two per
    author (so no one hits the ad limit or the flood filter)."""
    ids = []
    for i in range(count):
        author = app.service.user(AUTHOR + 10 + i // 2, "ru")
        category = "housing" if i == 0 else "jobs" if i <= 3 else "sale"
        word = WORDS[i % len(WORDS)]
        title = f"{word.capitalize()} №{i + 1}"
        text = f"Отдам {word} в хорошие руки; состояние {i + 1} из 10, забирать {'утром' if i % 2 else 'вечером'}."
        ids.append(app.service.create_ad(author, title, text, category).id)
    return ids


def _invites(app: MiniApp) -> int:
    with app.service.sessions() as session:
        return session.scalar(select(func.count()).select_from(BoardInvite)) or 0


def test_a_list_shows_a_skeleton_while_it_loads(mini_app: MiniApp) -> None:
    _seed(mini_app, 4)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(4)

    # Hold the next answer while looking at the page: placeholders, and the list says it is busy.
    seen: list[tuple[int, str | None, int]] = []

    def hold(route: Any) -> None:
        seen.append(
            (
                page.locator("#ads-list .skeleton").count(),
                page.locator("#ads-list").get_attribute("aria-busy"),
                cards.count(),
            )
        )
        screenshot(page, "skeleton-ru-dark")
        route.fallback()

    page.route("**/api/ads?*", hold)
    page.select_option("#category-filter", "jobs")
    expect(cards).to_have_count(3)
    assert seen == [(3, "true", 0)]
    expect(page.locator("#ads-list")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#ads-list .skeleton")).to_have_count(0)
    assert page.errors == []


def test_refusals_show_next_to_their_field_and_go_on_the_next_input(mini_app: MiniApp) -> None:
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    page.click("#tab-post")
    title, error = page.locator("#post-title"), page.locator("#post-title-error")

    stub(page, "clickMainButton()")  # everything empty
    expect(error).to_have_text("Write a title.")
    expect(title).to_have_attribute("aria-invalid", "true")
    assert "post-title-error" in (title.get_attribute("aria-describedby") or "").split()
    expect(title).to_be_focused()
    expect(page.locator("#error")).to_be_hidden()  # not in the top alert

    page.keyboard.type("A tandem bicycle")
    expect(error).to_be_hidden()
    expect(title).not_to_have_attribute("aria-invalid", "true")

    page.fill("#post-text", "Two seats, one chain.")
    stub(page, "clickMainButton()")  # no category chosen
    expect(page.locator("#post-category-error")).to_have_text("Unknown category.")
    expect(page.locator("#post-category")).to_have_attribute("aria-invalid", "true")
    page.select_option("#post-category", "sale")
    expect(page.locator("#post-category-error")).to_be_hidden()
    stub(page, "clickMainButton()")
    expect(page.locator("#ad-title")).to_have_text("A tandem bicycle")
    assert page.errors == []


def test_a_network_failure_offers_retry(mini_app: MiniApp) -> None:
    bike = _seed(mini_app, 1)[0]
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(1)

    # The list: the connection drops once.
    failed: list[str] = []

    def drop_once(route: Any) -> None:
        if failed:
            route.fallback()
        else:
            failed.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/api/ads?*", drop_once)
    page.select_option("#category-filter", "housing")
    expect(page.locator("#error-text")).to_have_text("Cannot reach the server.")
    expect(cards).to_have_count(0)
    screenshot(page, "network-error-en-dark")
    page.get_by_role("button", name="Retry").click()
    expect(cards).to_have_count(1)
    expect(page.locator("#error")).to_be_hidden()

    # A first message: the server answers 503 once; Retry sends it, and it is stored once.
    unavailable: list[str] = []

    def unavailable_once(route: Any) -> None:
        if unavailable:
            route.fallback()
        else:
            unavailable.append(route.request.url)
            route.fulfill(status=503, json={"error": "internal", "message": "Something went wrong on our side."})

    page.route(f"**/api/ads/{bike}/invite", unavailable_once)
    cards.first.click()
    page.fill("#write-text", "Hello! Is it still free?")
    stub(page, "clickMainButton()")
    expect(page.locator("#error-text")).to_have_text("Something went wrong on our side.")
    assert _invites(mini_app) == 0
    page.click("#error-retry")
    expect(page.locator("#write-status")).to_contain_text("Message sent")
    expect(page.locator("#error")).to_be_hidden()
    assert _invites(mini_app) == 1
    assert page.errors == []


def test_counters_count_live_and_never_cut(mini_app: MiniApp) -> None:
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    assert page.locator("input[maxlength], textarea[maxlength]").count() == 0
    page.click("#tab-post")
    title, counter = page.locator("#post-title"), page.locator("#post-title-count")
    expect(counter).to_have_text("0 / 100")

    for length, over in ((101, "1 символ"), (102, "2 символа"), (105, "5 символов")):
        title.fill("Ж" * length)
        expect(counter).to_have_text(f"{length} / 100 · лишних: {over.replace(' ', NBSP)}")
        assert title.input_value() == "Ж" * length  # nothing cut
    expect(counter).to_have_class("counter over")
    expect(title).to_have_attribute("aria-invalid", "true")
    assert main_button(page)["isActive"] is False
    assert stub(page, "clickMainButton()") is False  # an inactive MainButton does not click

    title.fill("👍" * 100)  # counted as the server counts: characters, not UTF-16 units
    expect(counter).to_have_text("100 / 100")
    # Nor what the server drops before counting: invisible and bidi characters, repeated and end spaces, tabs.
    for typed in ("  Ж \u200b  Ж\t\t" + "Ж" * 96 + "   ", "Ж" * 100 + "\u200b\u202e   ", "е\u0308" * 100):
        title.fill(typed)
        stored = len(clean(typed, multiline=False))
        assert stored in (99, 100)
        expect(counter).to_have_text(f"{stored} / 100")
    assert main_button(page)["isActive"] is True
    page.fill("#post-text", "я" * 2001)
    expect(page.locator("#post-text-count")).to_have_text(f"2{NBSP}001 / 2{NBSP}000 · лишних: 1{NBSP}символ")
    assert main_button(page)["isActive"] is False
    screenshot(page, "counters-ru-dark")
    page.keyboard.press("Backspace")
    expect(page.locator("#post-text-count")).to_have_text(f"2{NBSP}000 / 2{NBSP}000")
    assert main_button(page)["isActive"] is True


def test_the_pager_never_wraps_and_starts_each_page_at_the_top(mini_app: MiniApp) -> None:
    total = PER_PAGE + 5
    _seed(mini_app, total)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    cards, info = page.locator("#ads-list .ad-card"), page.locator("#page-info")
    expect(cards).to_have_count(PER_PAGE)
    expect(info).to_have_text(f"Стр. 1 из 2 · {total}{NBSP}объявлений")
    expect(page.locator("#page-prev")).to_be_disabled()
    expect(page.locator("#page-next")).to_be_enabled()

    page.locator("#page-next").scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 0
    page.click("#page-next")
    expect(cards).to_have_count(5)
    expect(info).to_have_text(f"Стр. 2 из 2 · {total}{NBSP}объявлений")
    page.wait_for_function("window.scrollY === 0")
    expect(page.locator("#ads-list .card-main").first).to_be_focused()
    expect(page.locator("#page-next")).to_be_disabled()

    # Past the last page there is nothing: no request, no wrap to the first.
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/ads?" in request.url else None)
    page.locator("#page-next").click(force=True)
    page.locator("#page-next").press("Enter")
    expect(info).to_have_text(f"Стр. 2 из 2 · {total}{NBSP}объявлений")
    assert asked == []

    page.click("#page-prev")
    expect(cards).to_have_count(PER_PAGE)
    expect(page.locator("#page-prev")).to_be_disabled()
    assert len(asked) == 1


def test_russian_counts_follow_the_plural_rules(mini_app: MiniApp) -> None:
    _seed(mini_app, 25)  # 1 in housing, 3 in jobs, 21 for sale
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    info = page.locator("#page-info")
    expect(info).to_contain_text(f"25{NBSP}объявлений")
    for category, said in (("sale", "21 объявление"), ("jobs", "3 объявления"), ("housing", "1 объявление")):
        page.select_option("#category-filter", category)
        expect(info).to_contain_text(said.replace(" ", NBSP))

    said = page.evaluate("[0, 1, 2, 4, 5, 11, 14, 21, 22, 25, 101, 111, 1.5].map((n) => Board.i18n.count('ads', n))")
    expected = "0 объявлений|1 объявление|2 объявления|4 объявления|5 объявлений|11 объявлений|14 объявлений|"
    expected += "21 объявление|22 объявления|25 объявлений|101 объявление|111 объявлений|1,5 объявления"
    assert said == [s.replace(" ", NBSP) for s in expected.split("|")]
    english = page.evaluate("Board.i18n.setLang('en'), [1, 2, 21].map((n) => Board.i18n.count('ads', n))")
    assert english == [f"1{NBSP}ad", f"2{NBSP}ads", f"21{NBSP}ads"]


def test_nothing_found_offers_to_reset_the_filters(mini_app: MiniApp) -> None:
    _seed(mini_app, 3)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    cards = page.locator("#ads-list .ad-card")
    expect(cards).to_have_count(3)
    page.select_option("#category-filter", "jobs")
    page.fill("#search", "рояль")
    page.click("#search-go")
    expect(page.locator("#ads-nothing")).to_contain_text("Ничего не найдено.")
    expect(cards).to_have_count(0)
    expect(page.locator("#pager")).to_be_hidden()
    expect(page.locator("#ads-empty")).to_be_hidden()  # not "no ads yet": there are some, just not these

    page.get_by_role("button", name="Сбросить фильтры").click()
    expect(cards).to_have_count(3)
    expect(page.locator("#search")).to_have_value("")
    expect(page.locator("#category-filter")).to_have_value("")
    expect(page.locator("#search")).to_be_focused()
    expect(page.locator("#ads-nothing")).to_be_hidden()


def test_a_refused_first_message_disables_the_form_with_the_reason(mini_app: MiniApp) -> None:
    first, second = _seed(mini_app, 2)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "ru")))
    guest = mini_app.service.user(GUEST, "ru")

    # Written from elsewhere (another device) while this page was open: the second one is refused.
    page.locator(f"#ads-list .ad-card[data-id='{first}'] .card-main").click()
    # The ad is on screen (its answer rendered) before the other device writes: until then the page's textarea
    # is the empty template's, editable, and an ad fetched after the invite rightly comes without a form.
    expect(page.locator("#ad-title")).to_have_text(f"{WORDS[0].capitalize()} №1")
    expect(page.locator("#write-text")).to_be_visible()
    expect(page.locator("#write-text")).to_be_editable()
    mini_app.service.send_invite(guest, first, "Здравствуйте, с другого устройства.")
    page.fill("#write-text", "Здравствуйте! Ещё актуально?")
    stub(page, "clickMainButton()")
    status = page.locator("#write-status")
    expect(status).to_have_text("Вы уже писали автору этого объявления: первое сообщение можно отправить один раз.")
    expect(status).to_have_class("status-line refused")
    expect(status).to_be_focused()
    expect(page.locator("#write-text")).to_be_disabled()
    expect(page.locator("#write-text")).to_have_value("Здравствуйте! Ещё актуально?")  # what was not sent stays
    assert main_button(page)["isVisible"] is False
    assert _invites(mini_app) == 1
    screenshot(page, "already-invited-ru-dark")

    # The author closed the ad meanwhile.
    stub(page, "clickBackButton()")
    page.locator(f"#ads-list .ad-card[data-id='{second}'] .card-main").click()
    expect(page.locator("#ad-title")).to_have_text("Самокат №2")
    expect(page.locator("#write-text")).to_be_visible()
    expect(page.locator("#write-text")).to_be_editable()
    author = mini_app.service.user(AUTHOR + 10, "ru")
    mini_app.service.close_ad(author, second)
    page.fill("#write-text", "Здравствуйте!")
    stub(page, "clickMainButton()")
    expect(status).to_have_text("Объявление закрыто или истекло.")
    expect(page.locator("#write-text")).to_be_disabled()
    assert main_button(page)["isVisible"] is False
    assert _invites(mini_app) == 1
    assert page.errors == []


def test_the_keyboard_reaches_and_opens_cards_and_tabs(mini_app: MiniApp) -> None:
    older, newer = _seed(mini_app, 2)
    page = mini_app.open(sign_init_data(tg_user(GUEST, "en")))
    expect(page.locator("#ads-list .ad-card")).to_have_count(2)

    # Tab from the top of the page reaches the first card.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('card-main')"):
            break
    first = page.locator(f"#ads-list .ad-card[data-id='{newer}'] .card-main")
    expect(first).to_be_focused()
    expect(first).to_have_attribute("role", "button")
    page.keyboard.press("Enter")
    expect(page.locator("#ad-title")).to_be_focused()
    expect(page.locator("#view-ad")).to_have_attribute("aria-labelledby", "ad-title")
    stub(page, "clickBackButton()")
    expect(first).to_be_focused()

    page.keyboard.press("Tab")
    second = page.locator(f"#ads-list .ad-card[data-id='{older}'] .card-main")
    expect(second).to_be_focused()
    page.keyboard.press(" ")
    expect(page.locator("#ad-title")).to_be_focused()
    expect(page.locator("#ad-title")).to_have_text("Велосипед №1")
    stub(page, "clickBackButton()")

    # Tabs: one tab stop, arrows move between them, each controls its panel.
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_count(3)
    for i in range(3):
        tab = tabs.nth(i)
        panel = page.locator("#" + (tab.get_attribute("aria-controls") or "missing"))
        expect(panel).to_have_attribute("role", "tabpanel")
        expect(panel).to_have_attribute("aria-labelledby", tab.get_attribute("id") or "")
    page.focus("#tab-browse")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-mine")).to_be_focused()
    expect(page.locator("#tab-mine")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tab-browse")).to_have_attribute("aria-selected", "false")
    expect(page.locator("#view-mine")).to_be_visible()
    expect(page.locator("#tab-browse")).to_have_attribute("tabindex", "-1")
    page.keyboard.press("End")
    expect(page.locator("#view-post")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("#post-title")).to_be_focused()
    assert page.errors == []
