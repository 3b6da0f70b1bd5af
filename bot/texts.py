"""Every text the bot shows, in Russian (the default) and English: handlers only pick keys.

The texts live in Project Fluent catalogues, `bot/locales/{lang}/bot.ftl`, so counts take the right plural form
(1 воркер, 2 воркера, 5 воркеров, 21 воркер). `t(lang, key, **values)` formats one text: `key` is dotted
(`account.card`), the catalogue's id the same with dashes (`account-card`). Numbers passed as values select the
plural forms and are printed as they are (no digit grouping); values are HTML-escaped by the caller where they
come from users. The catalogues are read on first use (Fluent and Babel cost ~130 ms to import).
"""

from __future__ import annotations

from pathlib import Path

from common.catalogue import Catalogue, CatalogueError, message_id

DEFAULT_LANGUAGE = "ru"
LANGUAGES = ("ru", "en")
# Telegram language codes of admins who read Russian best; everyone else gets English.
RUSSIAN_READERS = ("ru", "uk", "be", "kk", "ky", "uz", "tg", "hy", "az", "ka", "mo")
LOCALES = Path(__file__).resolve().parent / "locales"
CATALOGUE = "bot.ftl"

_catalogue = Catalogue(LOCALES, CATALOGUE, LANGUAGES, DEFAULT_LANGUAGE)
__all__ = ["LANGUAGES", "CatalogueError", "catalogue_path", "has_text", "message_id", "t"]


def catalogue_path(lang: str) -> Path:
    return _catalogue.path(lang)


def load_catalogue(lang: str) -> object:
    """Parse one language's catalogue (a syntax error anywhere in it is an error)."""
    return _catalogue.load(lang)


def language_for(telegram_code: str | None) -> str:
    """The default language for an admin from their Telegram language code."""
    if not telegram_code:
        return DEFAULT_LANGUAGE
    base = telegram_code.split("-")[0].lower()
    return "ru" if base in RUSSIAN_READERS else "en"


def t(lang: str, key: str, **values: object) -> str:
    """The text `key` in `lang` (else in the default language) with `values` put in; KeyError if neither has it."""
    return _catalogue.text(lang, key, **values)


def has_text(lang: str, key: str) -> bool:
    return _catalogue.has(lang, key)
