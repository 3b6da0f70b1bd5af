"""What the account card's Export shows: the format picker, the confirmation and the captions of what is sent,
each warning that a session is a live credential. Pure functions, like `bot.views`."""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardMarkup

from backend.account_views import AccountView
from bot.callbacks import AccountCard, ExportFormat, SessionExport
from bot.texts import t
from bot.views import Button, keyboard

# The `common.session_formats.SessionFormat` value of each.
SESSION_FORMATS = {
    ExportFormat.TELETHON_STRING: "telethon-string",
    ExportFormat.TELETHON_FILE: "telethon-file",
    ExportFormat.PYROGRAM_STRING: "pyrogram-string",
    ExportFormat.PYROGRAM_FILE: "pyrogram-file",
    ExportFormat.TDATA: "tdata",
}


def format_name(lang: str, fmt: ExportFormat) -> str:
    return t(lang, f"export.fmt.{fmt.value}")


def picker(lang: str, view: AccountView) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [Button(text=format_name(lang, fmt), callback_data=SessionExport(id=view.id, fmt=fmt).pack())]
        for fmt in ExportFormat
    ]
    back = [Button(text=t(lang, "btn.back"), callback_data=AccountCard(id=view.id).pack())]
    return t(lang, "export.pick", phone=escape(view.phone_masked)), keyboard(*rows, back)


def confirmation(lang: str, view: AccountView, fmt: ExportFormat) -> tuple[str, InlineKeyboardMarkup]:
    yes = SessionExport(id=view.id, fmt=fmt, confirmed=True).pack()
    no = AccountCard(id=view.id).pack()
    text = t(lang, "export.confirm", phone=escape(view.phone_masked), format=format_name(lang, fmt))
    return text, keyboard(
        [
            Button(text=t(lang, "btn.yes_export"), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=no),
        ]
    )


def caption(lang: str, view: AccountView, fmt: ExportFormat) -> str:
    return t(lang, "export.caption", phone=escape(view.phone_masked), format=format_name(lang, fmt))


def sidecar_caption(lang: str) -> str:
    return t(lang, "export.sidecar_caption")


def sent_note(lang: str, fmt: ExportFormat) -> str:
    return t(lang, "export.sent", format=format_name(lang, fmt))
