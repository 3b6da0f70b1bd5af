"""What people type, made to say what it shows: invisible and look-alike characters, plurals and catalogues.

Unit tests of `board.text` and `board.spam`; the service on SQLite and PostgreSQL. (`test_board_search.py`:
search and the API's refusals of odd queries and URLs.)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from board.errors import BoardError
from board.service import CATEGORIES, BoardService
from board.spam import SpamReason, spam_reason
from board.text import clean, fold, for_filters, has_visible, search_terms
from board.texts import CATALOGUE, LANGUAGES, has_text, t
from common.crypto import SecretBox
from config import BoardLimits
from database.board_models import BoardAd, BoardReport, ReportTarget
from database.engine import open_database
from tests.support.board_moderation import Clock
from tests.support.stack import TEST_SECRET_KEY
from tests.support.webapp_stub import establish

BOARD = Path(__file__).resolve().parent.parent / "board"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


# ---- board.text: pure functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("t\u200b.me/seller", "t.me/seller"),  # zero-width space
        ("avito\u200b.ru", "avito.ru"),
        ("t\u2060.me/seller", "t.me/seller"),  # word joiner
        ("avito\u00ad.ru", "avito.ru"),  # soft hyphen
        ("\ufeffBOM first", "BOM first"),
        ("Продаю \u202eакдол\u202c лодку", "Продаю акдол лодку"),  # a right-to-left override, and its pop
        ("\u2066isolated\u2069 \u200eLTR\u200f mark", "isolated LTR mark"),
        ("\u200b\u200b\u200b", ""),
        (INVISIBLE, ""),
        ("bell\x07 escape\x1b[31m nul\x00", "bell escape[31m nul"),
        ("private \ue000use", "private use"),
        ("e\u0301te", "\u00e9te"),  # composed (NFC)
        ("2 м² и ½ цены", "2 м² и ½ цены"),  # NFC keeps compatibility characters as written
        ("ｔ.ｍｅ/seller", "ｔ.ｍｅ/seller"),  # fullwidth: shown as written, read as t.me by the filters
        ("Семья \U0001f468\u200d\U0001f469\u200d\U0001f467!", "Семья \U0001f468\u200d\U0001f469\u200d\U0001f467!"),
        ("\U0001f3f3\ufe0f\u200d\U0001f308 flag", "\U0001f3f3\ufe0f\u200d\U0001f308 flag"),  # ZWJ after VS-16
        ("\U0001f44d\U0001f3fd\u200d ok", "\U0001f44d\U0001f3fd ok"),  # a joiner with nothing after it
        ("a\u200db c\u200d\U0001f600", "ab c\U0001f600"),  # between letters, or a letter and an emoji
        ("  two\t\tspaces \u00a0 here  ", "two spaces here"),
        ("line one\r\nline two\rthree\u2028four", "line one\nline two\nthree\nfour"),
        ("para\n\n\n\n\nnext", "para\n\nnext"),
    ],
)
def test_clean_strips_what_hides_or_reorders_text(raw: str, cleaned: str) -> None:
    assert clean(raw) == cleaned
    assert clean(cleaned) == cleaned  # idempotent
    assert "\u202e" not in clean(raw) and "\u200b" not in clean(raw)


def test_clean_one_line_fields_have_no_line_breaks() -> None:
    assert clean("title\non\r\ntwo\u2029lines", multiline=False) == "title on two lines"
    assert clean(" \n \u200b\n ", multiline=False) == ""


@pytest.mark.parametrize(
    ("value", "visible"),
    [
        ("", False),
        ("   \n\t", False),
        ("\u00a0\u2000\u3000", False),  # spaces of other widths
        ("\u200b\u2060\ufeff", False),
        ("\u0301\u0301", False),  # combining marks with nothing to combine with
        ("\ufe0f", False),
        ("\u3164\u3164", False),  # Hangul fillers: letters by category, blank on screen
        ("\u115f\u1160\uffa0", False),
        ("\u2800\u2800", False),  # braille blank
        (".", True),
        ("5", True),
        ("\U0001f600", True),
        ("м²", True),
        ("ok", True),
        ("\u3164 a", True),
    ],
)
def test_has_visible(value: str, visible: bool) -> None:
    assert has_visible(value) is visible


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ("ｔ.ｍｅ/seller", "t.me/seller"),  # fullwidth letters
        ("ｔ．ｍｅ/seller", "t.me/seller"),  # and a fullwidth full stop
        ("t.m\u0435/seller", "t.me/seller"),  # Cyrillic е inside a Latin domain
        ("\u0442.me/seller", "t.me/seller"),  # Cyrillic т
        ("\u0430vito.ru", "avito.ru"),  # Cyrillic а
        ("t\u3002me/seller", "t.me/seller"),  # ideographic full stop
        ("t\u200b.me/seller", "t.me/seller"),  # invisible characters do not survive either
        ("м²", "м2"),
        ("мост через реку", "мост через реку"),  # Cyrillic words are left alone
        ("Привет, world", "Привет, world"),  # separate words in separate scripts too
    ],
)
def test_for_filters_reads_look_alikes_as_what_they_look_like(raw: str, read: str) -> None:
    assert for_filters(raw) == read


def test_fold_and_search_terms() -> None:
    assert fold("КОТЁНКА") == fold("котенка") == "котенка"
    assert fold("Ёлка") == fold("елка") == "елка"
    assert fold("ＡＢＣ Straße") == "abc strasse"
    assert fold("е\u0308ж") == "еж"  # a decomposed ё too
    assert search_terms("  Котёнка, РЫЖЕГО!! ") == ["котенка", "рыжего"]
    assert search_terms("100%_ off") == ["100", "off"]
    assert search_terms("\"кот\"* AND NEAR(a b) -x ':*' | & !") == ["кот", "and", "near", "a", "b", "x"]
    assert search_terms("") == search_terms("!!! ... \U0001f600") == []
    assert search_terms(" ".join(f"w{i}" for i in range(12))) == [f"w{i}" for i in range(8)]
    assert search_terms("x" * 100) == ["x" * 40]
    assert search_terms("м²") == ["м2"]


# ---- board.spam with those strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Пишите t\u200b.me/seller", SpamReason.LINK),
        ("смотри avito\u200b.ru", SpamReason.LINK),
        ("t\u2060.me/seller", SpamReason.LINK),
        ("ｔ.ｍｅ/seller", SpamReason.LINK),
        ("t.m\u0435/seller", SpamReason.LINK),
        ("\u0430vito.ru", SpamReason.LINK),
        ("ＷＷＷ.example.com", SpamReason.LINK),
        ("t\u3002me/seller", SpamReason.LINK),
        ("пишите @\u200bseller_bot", SpamReason.LINK),
        ("avito\u00ad.ru", SpamReason.LINK),
        ("Best ＣＡＳＩＮＯ in town", SpamReason.STOP_WORD),
        ("Best c\u0430sino in town", SpamReason.STOP_WORD),  # a Cyrillic а in a Latin word
        ("Best ca\u200bsino in town", SpamReason.STOP_WORD),
        ("Продаю котёнка, 2 м², недорого", None),
        ("Семья \U0001f468\u200d\U0001f469\u200d\U0001f467 ищет няню", None),
        ("Пишите в личку, отвечу быстро", None),
        ("Цена 1.5 тыс., торг", None),
    ],
)
def test_the_spam_filter_is_not_fooled(value: str, reason: str | None) -> None:
    assert spam_reason(clean(value), ("casino",)) == reason
    assert spam_reason(value, ("casino",)) == reason  # nor when handed the raw text


# ---- the service: refused, or stored cleaned (SQLite and PostgreSQL) ---------------------------------------


@pytest.fixture
def service(database_url: str) -> Iterator[BoardService]:
    engine, sessions = open_database(database_url)
    limits = BoardLimits(stop_words=("casino",), ads_per_user=50, hide_after_reports=1)
    yield BoardService(sessions, SecretBox(TEST_SECRET_KEY), limits, clock=Clock())
    engine.dispose()


def refused(code: str, action: Any, *args: object) -> BoardError:
    with pytest.raises(BoardError) as raised:
        action(*args)
    assert raised.value.code == code, raised.value.code
    return raised.value


def stored(service: BoardService) -> list[str]:
    """Every text the board keeps about ads and reports, as the database has it."""
    with service.sessions() as session:
        rows = session.execute(select(BoardAd.title, BoardAd.text, BoardAd.search_text)).all()
        reasons = session.scalars(select(BoardReport.reason)).all()
    return [value for row in rows for value in row] + list(reasons)


def test_an_ad_of_only_invisible_characters_is_refused(service: BoardService) -> None:
    author = service.user(1)
    for blank in ("\u200b\u200b\u200b", INVISIBLE, "\u202e", " \u2060 \ufeff ", "\u3164\u3164", "\u2800", "\u0301"):
        error = refused("title_empty", service.create_ad, author, blank, "A real text about a bicycle.", "sale")
        assert error.field == "title"
        error = refused("text_empty", service.create_ad, author, "Bicycle", blank, "sale")
        assert error.field == "text"
        refused("message_empty", service.send_invite, author, "whatever", blank)
    assert service.my_ads(author) == []


def test_titles_and_texts_are_stored_cleaned(service: BoardService) -> None:
    author = service.user(1)
    ad = service.create_ad(
        author,
        "Продаю \u202eакдол\u202c лодку\u200b",
        "Почти\u00ad новая, \u2066с мотором\u2069.\u200b\nЦена 2\u2060 тыс.",
        "sale",
    )
    assert (ad.title, ad.text) == ("Продаю акдол лодку", "Почти новая, с мотором.\nЦена 2 тыс.")
    family = service.create_ad(
        author, "Семья \U0001f468\u200d\U0001f469\u200d\U0001f467", "Участок 6 м², дом.", "other"
    )
    assert family.title == "Семья \U0001f468\u200d\U0001f469\u200d\U0001f467"  # an emoji sequence stays whole
    assert family.text == "Участок 6 м², дом."
    # The limit counts what is kept: a full title padded with invisible characters fits.
    full = ("Большая распродажа мебели " * 4)[:100]
    padded = service.create_ad(author, full[:50] + "\u200b" * 80 + full[50:], "Padded but fine.", "other")
    assert padded.title == full
    reporter = service.user(2)
    establish(service, 2)
    service.report(reporter, ReportTarget.AD, ad.id, "\u202eмошенник\u200b")
    texts = stored(service)
    assert "мошенник" in texts
    for value in texts:
        for invisible in "\u202e\u202c\u200b\u00ad\u2060\u2066\u2069":
            assert invisible not in value, (value, invisible)
    assert any("\u200d" in value for value in texts)  # only inside the emoji sequence


@pytest.mark.parametrize(
    "title",
    [
        "Пишите t\u200b.me/seller",
        "Смотри avito\u200b.ru",
        "Пишите t\u2060.me/seller",
        "Пишите ｔ.ｍｅ/seller",
        "Пишите t.m\u0435/seller",
    ],
)
def test_hidden_links_are_refused(service: BoardService, title: str) -> None:
    author = service.user(1)
    refused("spam_link", service.create_ad, author, title, "Just an ordinary text.", "other")
    refused("spam_link", service.create_ad, author, "Ordinary title", title, "other")
    ad = service.create_ad(service.user(2), "Велосипед", "Горный, почти новый.", "sale")
    refused("spam_link", service.send_invite, author, ad.id, title)
    assert len(service.my_ads(author)) == 0


# ---- plurals and catalogues ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "russian"),
    [
        (1, "1 открытое объявление"),
        (2, "2 открытых объявления"),
        (5, "5 открытых объявлений"),
        (11, "11 открытых объявлений"),
        (21, "21 открытое объявление"),
        (22, "22 открытых объявления"),
        (25, "25 открытых объявлений"),
        (111, "111 открытых объявлений"),
    ],
)
def test_russian_plurals_follow_cldr(n: int, russian: str) -> None:
    assert t("ru", "error.ad_limit", limit=n) == f"У вас уже {russian}: закройте одно, чтобы разместить новое."
    english = f"{n} open ad" + ("" if n == 1 else "s")
    assert t("en", "error.ad_limit", limit=n) == f"You already have {english}: close one to post another."


@pytest.mark.parametrize(
    ("n", "reports", "minutes"),
    [(1, "1 жалобу", "первую 1 минуту"), (3, "3 жалобы", "первые 3 минуты"), (10, "10 жалоб", "первые 10 минут"),
     (21, "21 жалобу", "первую 21 минуту"), (12, "12 жалоб", "первые 12 минут")],
)  # fmt: skip
def test_other_counted_texts(n: int, reports: str, minutes: str) -> None:
    assert f"отправили {reports}." in t("ru", "error.report_limit", limit=n)
    assert f"в {minutes} после" in t("ru", "error.reopen_expired", minutes=n)
    assert str(n) in t("en", "error.report_limit", limit=n)


def test_both_catalogues_define_the_same_texts() -> None:
    ids = {lang: CATALOGUE.ids(lang) for lang in LANGUAGES}
    assert ids["ru"] == ids["en"], {"ru only": ids["ru"] - ids["en"], "en only": ids["en"] - ids["ru"]}


_NOTICE_KEY = re.compile(r"""["'](?P<key>(?:chat|relay|invite|bot|ban|category|cmd|error)\.[A-Za-z0-9_]+)["']""")
_RAISING = ("BoardError", "invalid", "conflict", "forbidden", "too_many", "not_found")


def _python_sources() -> list[Path]:
    return sorted(path for path in BOARD.rglob("*.py") if "__pycache__" not in path.parts)


def used_keys() -> set[str]:
    """Every text key the board's code names: error codes it raises, and literal notice keys; keys it builds
    (`{code}_empty`, `spam_{reason}`, `{what}_not_found`, `category.{c}`, `cmd.{name}`) from what builds them."""
    from board.main import COMMANDS

    keys: set[str] = set()
    fields: set[str] = set()
    for path in _python_sources():
        source = path.read_text(encoding="utf-8")
        keys.update(match["key"] for match in _NOTICE_KEY.finditer(source))
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0] if node.args else None
            codes = [first] if not isinstance(first, ast.IfExp) else [first.body, first.orelse]
            codes = [c.value for c in codes if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if name in _RAISING and codes:
                keys.update(f"error.{code}_not_found" if name == "not_found" else f"error.{code}" for code in codes)
            elif name == "not_found" and first is None:
                keys.add("error.ad_not_found")
            elif name == "clean_field" and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                fields.add(str(node.args[2].value))
    keys.update(f"error.{field}_{end}" for field in fields for end in ("empty", "too_long"))
    keys.update(f"error.spam_{value}" for name, value in vars(SpamReason).items() if not name.startswith("_"))
    keys.update(f"category.{c}" for c in CATEGORIES)
    keys.update(f"cmd.{name}" for name in COMMANDS)
    return keys


def test_every_text_the_code_uses_is_in_both_catalogues() -> None:
    keys = used_keys()
    # The scan found what it must: raised codes, built codes and notice keys alike.
    assert {"error.ad_not_found", "error.report_closed_by_you", "error.title_empty", "error.message_too_long",
            "error.spam_link", "error.already_handled", "chat.ended_banned", "ban.notice", "category.sale",
            "cmd.mychats", "error.bad_request", "error.unauthorized"} <= keys  # fmt: skip
    missing = {lang: sorted(key for key in keys if not has_text(lang, key)) for lang in LANGUAGES}
    assert missing == {lang: [] for lang in LANGUAGES}
