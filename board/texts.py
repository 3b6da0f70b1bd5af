"""Everything the board says, in Russian (the default) and English: `t(lang, key, **values)`.

The texts live in Project Fluent catalogues, `board/locales/{lang}/board.ftl` (the admin bot's format), so
counts take the plural form CLDR gives each language. Error texts are keyed `error.<code>` by
`BoardError.code`; the Mini App gets them in API answers. A key missing from both catalogues, or a value a
text needs and did not get, shows the key rather than failing the caller (a test checks every key used).
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.catalogue import Catalogue, CatalogueError

log = logging.getLogger(__name__)

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
CATALOGUE = Catalogue(Path(__file__).resolve().parent / "locales", "board.ftl", LANGUAGES, DEFAULT_LANGUAGE)


def lang_of(code: str | None) -> str:
    """Telegram's `language_code` → "en" or "ru" (Russian for everyone else, as the board was made for them)."""
    return "en" if (code or "").lower().startswith("en") else "ru"


def has_text(lang: str, key: str) -> bool:
    return CATALOGUE.has(lang, key)


def t(lang: str, key: str, **values: object) -> str:
    try:
        return CATALOGUE.text(lang, key, **values)
    except (KeyError, CatalogueError) as error:
        log.error("board text %s cannot be shown: %s", key, type(error).__name__)
        return key
