"""What workers and the backend report, in the admin's language: a status detail, an event's reason or why an
operation failed (`common.details.Detail`) and an error (`common.errors.FleetError`) are each a code with
parameters, shown as the catalogue's text for the code (`detail-<code>`, `err-<code>`) with the parameters
put in. Nothing is translated back from English: a detail without a code (a row written before codes) is
shown as its English text."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from functools import cache
from html import escape

from bot.texts import CatalogueError, has_text, t
from common.details import ENGLISH, Detail, is_moment


@cache
def _formats(code: str) -> dict[str, str]:
    """The format each parameter of a code's English text is written with ("seconds" -> ".0f")."""
    return {name: spec for _, name, spec, _ in string.Formatter().parse(ENGLISH[code]) if name and spec}


def _word(lang: str, prefix: str, value: str) -> str:
    key = f"{prefix}.{value}"
    return t(lang, key) if has_text(lang, key) else escape(value)


def detail_text(lang: str, said: Detail | None, english: str = "") -> str:
    """`said` in `lang` (safe HTML); `english` (escaped) when there is no code to render."""
    if said is None:
        return escape(english)
    formats = _formats(said.code)
    values: dict[str, object] = {}
    for name, value in said.params.items():
        if isinstance(value, Detail):
            values[name] = detail_text(lang, value)
        elif name == "status":  # an account status: the admin's word for it
            values[name] = _word(lang, "st", str(value))
        elif name in ("before", "after"):  # a check's verdicts
            values[name] = _word(lang, "verdict", str(value))
        elif is_moment(name, value):  # the admin's time zone is unknown: UTC, as the bot's other times
            values[name] = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
        elif isinstance(value, float) or (name in formats and not isinstance(value, str)):
            values[name] = format(value, formats.get(name, "g"))  # as the English text writes it
        elif isinstance(value, int):
            values[name] = value  # counts choose plural forms
        else:
            values[name] = escape(str(value))
    return t(lang, f"detail.{said.code}", **values)


def error_text(lang: str, error: BaseException) -> str:
    """An error in the admin's language from its code and values (`common.errors.FleetError`); anything else
    (a bug's error) as its own message, escaped."""
    code = getattr(error, "code", None)
    if not isinstance(code, str) or not has_text(lang, f"err.{code}"):
        return escape(str(error))
    values: dict[str, object] = {"message": escape(str(error))}
    for name, value in (getattr(error, "values", None) or {}).items():
        if isinstance(value, Detail):
            values[name] = detail_text(lang, value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = value
        else:
            values[name] = escape(str(value))
    try:
        return t(lang, f"err.{code}", **values)
    except (KeyError, CatalogueError):
        return escape(str(error))
