"""Every text the bot shows, in Russian (the default) and English: handlers only pick keys.

The texts live in Project Fluent catalogues, `bot/locales/{lang}/bot.ftl`, so counts take the right plural form
(1 воркер, 2 воркера, 5 воркеров, 21 воркер). `t(lang, key, **values)` formats one text: `key` is dotted
(`account.card`), the catalogue's id the same with dashes (`account-card`). Numbers passed as values select the
plural forms and are printed as they are (no digit grouping); values are HTML-escaped by the caller where they
come from users. The catalogues are read on first use (Fluent and Babel cost ~130 ms to import).
"""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluent.runtime import FluentBundle

DEFAULT_LANGUAGE = "ru"
LANGUAGES = ("ru", "en")
# Telegram language codes of admins who read Russian best; everyone else gets English.
RUSSIAN_READERS = ("ru", "uk", "be", "kk", "ky", "uz", "tg", "hy", "az", "ka", "mo")
LOCALES = Path(__file__).resolve().parent / "locales"
CATALOGUE = "bot.ftl"

# Errors that carry no `code` of their own: the catalogue text for their type, and the attributes it shows.
_ERRORS_BY_TYPE: dict[str, tuple[str, dict[str, str]]] = {
    "WorkerStillOnline": ("worker_still_online", {"name": "name"}),
    "WorkerHasAccounts": ("worker_has_accounts", {"name": "name"}),
    "AccountExists": ("account_exists", {"id": "account_id"}),
    "WorkerDidNotAnswer": ("no_answer", {"worker": "worker"}),
}

_bundles: dict[str, FluentBundle] = {}
_loading = threading.Lock()


class CatalogueError(ValueError):
    """A catalogue that does not parse, or a text formatted without a value it needs."""


def message_id(key: str) -> str:
    """The catalogue id of a dotted key (Fluent ids cannot hold dots)."""
    return key.replace(".", "-")


def catalogue_path(lang: str) -> Path:
    return LOCALES / lang / CATALOGUE


def load_catalogue(lang: str) -> FluentBundle:
    """Parse one language's catalogue; a syntax error anywhere in it is an error, not a silently missing text."""
    from fluent.runtime import FluentBundle, FluentResource
    from fluent.syntax import ast

    resource = FluentResource(catalogue_path(lang).read_text(encoding="utf-8"))
    junk = [entry for entry in resource.body if isinstance(entry, ast.Junk)]
    if junk:
        problems = "; ".join(f"{a.code} {a.message}" for entry in junk for a in entry.annotations)
        raise CatalogueError(f"{catalogue_path(lang)}: {problems or 'unparsable entry'}: {junk[0].content[:80]!r}")
    # No Unicode isolation marks around values: Telegram's HTML and the tests want the plain text.
    bundle = FluentBundle([lang], use_isolating=False)
    bundle.add_resource(resource)
    return bundle


def _bundle(lang: str) -> FluentBundle:
    bundle = _bundles.get(lang)
    if bundle is None:
        with _loading:
            bundle = _bundles.get(lang)
            if bundle is None:
                bundle = _bundles[lang] = load_catalogue(lang)
    return bundle


def _fluent_value(value: object) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        from fluent.runtime.types import fluent_number

        return fluent_number(value, useGrouping=False)  # ids and counts as they are: 12345, not 12 345
    return value if isinstance(value, str) else str(value)


def language_for(telegram_code: str | None) -> str:
    """The default language for an admin from their Telegram language code."""
    if not telegram_code:
        return DEFAULT_LANGUAGE
    base = telegram_code.split("-")[0].lower()
    return "ru" if base in RUSSIAN_READERS else "en"


def t(lang: str, key: str, **values: object) -> str:
    """The text `key` in `lang` (else in the default language) with `values` put in; KeyError if neither has it."""
    ident = message_id(key)
    bundle = _bundle(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)
    if not bundle.has_message(ident):
        bundle = _bundle(DEFAULT_LANGUAGE)
        if not bundle.has_message(ident):
            raise KeyError(key)
    pattern = bundle.get_message(ident).value
    if pattern is None:
        raise KeyError(key)
    text, errors = bundle.format_pattern(pattern, {name: _fluent_value(v) for name, v in values.items()})
    if errors:
        raise CatalogueError(f"{key}: {'; '.join(str(error) for error in errors)}")
    return text


def has_text(lang: str, key: str) -> bool:
    return _bundle(lang if lang in LANGUAGES else DEFAULT_LANGUAGE).has_message(message_id(key))


def error_text(lang: str, error: BaseException) -> str:
    """An error in the admin's language when its code (or its type) is in the catalogue, else its own (English)
    message."""
    code = getattr(error, "code", None)
    values: dict[str, object] = dict(getattr(error, "values", None) or {})
    if type(error).__name__ in _ERRORS_BY_TYPE and not (code and has_text(lang, f"err.{code}")):
        code, attributes = _ERRORS_BY_TYPE[type(error).__name__]
        values = {name: getattr(error, attribute, "") for name, attribute in attributes.items()}
    if code and has_text(lang, f"err.{code}"):
        safe = {key: value if isinstance(value, int | float) else escape(str(value)) for key, value in values.items()}
        try:
            return t(lang, f"err.{code}", **safe)
        except (KeyError, CatalogueError):
            pass
    return escape(str(error))
