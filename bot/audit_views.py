"""What the Audit page shows (owners): the audit log newest first, a page at a time, each row with its time, who
(and the role they acted in), the action, its targets and how it ended; buttons filter by a row's actor or target.
Pure functions, like `bot.views`."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import quote, unquote

from aiogram.types import InlineKeyboardMarkup

from backend.audit_service import AuditView
from bot.admin_views import role_name
from bot.callbacks import AuditPage, Menu, MenuAction
from bot.texts import t
from bot.views import Button, keyboard

PAGE = 10
TARGETS_SHOWN = 3
FILTER_BUTTONS = 3  # of each kind: actors, targets
MAX_CALLBACK = 64  # bytes Telegram allows a button's data


def encode_filter(value: str) -> str:
    """A filter as a button carries it: ':' separates a callback's fields, so it is percent-encoded."""
    return quote(value, safe="")


def decode_filter(value: str) -> str:
    return unquote(value)


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> AuditFilter:
        """`/audit` arguments: `actor bot:123`, `target account:17`, or one word — an actor's (`bot:…`, `cli:…`, a
        name) or a target (`account:17`, `worker:fra-1`)."""
        words = text.split(maxsplit=1)
        if not words:
            return cls()
        if len(words) == 2 and words[0].lower() in ("actor", "кто"):
            return cls(actor=words[1].strip())
        if len(words) == 2 and words[0].lower() in ("target", "цель"):
            return cls(target=words[1].strip())
        value = text.strip()
        kind = value.split(":", 1)[0].lower()
        if ":" in value and kind not in ("bot", "cli"):
            return cls(target=value)
        return cls(actor=value)

    def page(self, before: int = 0) -> AuditPage:
        return AuditPage(before=before, actor=encode_filter(self.actor), target=encode_filter(self.target))

    @classmethod
    def of(cls, data: AuditPage) -> AuditFilter:
        return cls(decode_filter(data.actor), decode_filter(data.target))


def _fits(data: AuditPage) -> str | None:
    try:
        packed = data.pack()  # raises past Telegram's 64 bytes
    except ValueError:
        return None
    return packed if len(packed.encode()) <= MAX_CALLBACK else None


def _row(lang: str, view: AuditView) -> str:
    targets = list(view.targets[:TARGETS_SHOWN])
    shown = ", ".join(escape(target) for target in targets) or "—"
    if len(view.targets) > TARGETS_SHOWN:
        shown += " " + t(lang, "audit.more", n=len(view.targets) - TARGETS_SHOWN)
    outcome = "✅" if view.outcome == "ok" else f"❌ {escape(view.outcome)}"
    return t(
        lang,
        "audit.row",
        at=view.at.strftime("%m-%d %H:%M:%S"),
        who=escape(view.who),
        role=role_name(lang, view.role),
        action=escape(view.action),
        targets=shown,
        outcome=outcome,
    )


def audit_page(
    lang: str, rows: list[AuditView], chosen: AuditFilter, before: int, more: bool
) -> tuple[str, InlineKeyboardMarkup]:
    """`rows` newest first (at most PAGE); `more`: older rows exist past the last."""
    lines = [t(lang, "audit.title")]
    if chosen.actor:
        lines.append(t(lang, "audit.filter.actor", value=escape(chosen.actor)))
    if chosen.target:
        lines.append(t(lang, "audit.filter.target", value=escape(chosen.target)))
    lines.append("")
    lines += [_row(lang, view) for view in rows] or [t(lang, "audit.empty")]
    if not chosen.actor and not chosen.target:
        lines += ["", t(lang, "audit.hint")]
    filters: list[list[Button]] = []
    actors = [view.actor for view in rows if view.actor != chosen.actor]
    targets = [target for view in rows for target in view.targets if target != chosen.target]
    for kind, values, icon in (("actor", actors, "👤"), ("target", targets, "🎯")):
        row = []
        for value in list(dict.fromkeys(values))[:FILTER_BUTTONS]:
            data = _fits(AuditFilter(**{kind: value}).page())
            if data is not None:
                row.append(Button(text=f"{icon} {value}", callback_data=data))
        filters.append(row)
    moves = []
    if before:
        moves.append(Button(text=t(lang, "audit.btn.newest"), callback_data=_fits(chosen.page()) or AuditPage().pack()))
    if more and rows:
        older = _fits(chosen.page(rows[-1].id))
        if older is not None:
            moves.append(Button(text=t(lang, "audit.btn.older"), callback_data=older))
    bottom = [Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())]
    if chosen.actor or chosen.target:
        bottom.insert(0, Button(text=t(lang, "audit.btn.all"), callback_data=AuditPage().pack()))
    return "\n".join(lines), keyboard(*filters, moves, bottom)
