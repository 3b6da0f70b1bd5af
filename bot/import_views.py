"""The add-account wizard's screens for an uploaded file holding several accounts: the phones it asks for, and
what became of each account (`backend.session_uploads`)."""

from __future__ import annotations

from html import escape

from backend.session_uploads import Found, Outcome
from bot.details import error_text
from bot.texts import t


def ask_phones(lang: str, unnamed: list[Found]) -> str:
    lines = [t(lang, "wizard.phones", count=len(unnamed))]
    lines += [t(lang, "wizard.phone_line", file=escape(f.label), user=f.item.user_id or "?") for f in unnamed]
    return "\n".join(lines)


def import_report(lang: str, outcomes: list[Outcome]) -> str:
    imported = sum(o.account is not None for o in outcomes)
    lines = [t(lang, "wizard.report", imported=imported, total=len(outcomes))]
    for outcome in outcomes:
        name = escape(outcome.label)
        if outcome.account is not None:
            view = outcome.account
            lines.append(t(lang, "wizard.report_ok", file=name, id=view.id, phone=escape(view.phone_masked)))
        else:
            error = error_text(lang, outcome.error) if outcome.error is not None else "?"
            lines.append(t(lang, "wizard.report_failed", file=name, error=error))
    return "\n".join(lines)
