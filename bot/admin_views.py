"""What the Admins page shows (owners only): the list with each admin's role, an admin's card with the other roles
to give and Remove (confirmed), and the add form's prompts. Pure functions, like `bot.views`."""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardMarkup

from backend.admins_service import AdminView
from bot.callbacks import AdminAction, AdminCard, AdminRole, Form, FormAction, Menu, MenuAction
from bot.texts import has_text, t
from bot.views import Button, keyboard
from common.roles import Role

ROLE_ICON = {Role.OWNER: "👑", Role.OPERATOR: "🛠", Role.VIEWER: "👁", Role.MODERATOR: "🛡"}


def role_name(lang: str, role: str) -> str:
    """A role in the admin's words (the audit log's `shell` and `system` too); anything else as it is."""
    key = f"role.{role}"
    return t(lang, key) if has_text(lang, key) else escape(role)


def label(view: AdminView) -> str:
    return escape(view.name) if view.name else str(view.tg_id)


def _menu(lang: str) -> Button:
    return Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())


def _cancel(lang: str) -> list[Button]:
    return [Button(text=t(lang, "btn.cancel"), callback_data=Form(action=FormAction.CANCEL).pack())]


def admins_page(lang: str, admins: list[AdminView], note: str = "") -> tuple[str, InlineKeyboardMarkup]:
    lines = [t(lang, "admins.title", n=len(admins))]
    rows: list[list[Button]] = []
    for view in admins:
        icon, role = ROLE_ICON[view.role], role_name(lang, view.role)
        name = f" {escape(view.name)}" if view.name else ""
        source = t(lang, "admins.from_env") if view.from_env else ""
        lines.append(t(lang, "admins.line", icon=icon, role=role, id=str(view.tg_id), name=name, source=source))
        if not view.from_env:
            text = f"{icon} {label(view)}"
            rows.append([Button(text=text, callback_data=AdminCard(tg_id=view.tg_id).pack())])
    add = [Button(text=t(lang, "admins.btn.add"), callback_data=Menu(action=MenuAction.ADD_ADMIN).pack())]
    text = "\n".join(lines) + (f"\n\n{note}" if note else "")
    return text, keyboard(*rows, add, [_menu(lang)])


def admin_card(lang: str, view: AdminView, note: str = "") -> tuple[str, InlineKeyboardMarkup]:
    added = view.added_at.strftime("%Y-%m-%d %H:%M UTC") if view.added_at else "—"
    text = t(
        lang,
        "admin.card",
        icon=ROLE_ICON[view.role],
        name=label(view),
        id=str(view.tg_id),
        role=role_name(lang, view.role),
        about=t(lang, f"role.{view.role.value}.about"),
        by=escape(view.added_by or "—"),
        at=added,
    )
    roles = [
        [Button(text=t(lang, "admin.btn.role", icon=ROLE_ICON[r], role=role_name(lang, r)),
                callback_data=AdminRole(tg_id=view.tg_id, role=r).pack())]
        for r in Role
        if r is not view.role
    ]  # fmt: skip
    remove = Button(
        text=t(lang, "admin.btn.remove"), callback_data=AdminCard(tg_id=view.tg_id, action=AdminAction.REMOVE).pack()
    )
    back = Button(text=t(lang, "btn.back"), callback_data=Menu(action=MenuAction.ADMINS).pack())
    return text + (f"\n\n{note}" if note else ""), keyboard(*roles, [remove], [back])


def remove_confirm(lang: str, view: AdminView) -> tuple[str, InlineKeyboardMarkup]:
    text = t(lang, "admin.remove.confirm", name=label(view), id=str(view.tg_id), role=role_name(lang, view.role))
    yes = AdminCard(tg_id=view.tg_id, action=AdminAction.REMOVE_CONFIRMED).pack()
    return text, keyboard(
        [
            Button(text=t(lang, "btn.yes_remove"), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=AdminCard(tg_id=view.tg_id).pack()),
        ]
    )


def ask_tg_id(lang: str, problem: str = "") -> tuple[str, InlineKeyboardMarkup]:
    text = t(lang, "admin.add.tg_id")
    return (t(lang, "wizard.retry", error=problem) if problem else text), keyboard(_cancel(lang))


def ask_role(lang: str, tg_id: int) -> tuple[str, InlineKeyboardMarkup]:
    roles = [f"{ROLE_ICON[r]} <b>{role_name(lang, r)}</b> — {t(lang, f'role.{r.value}.about')}" for r in Role]
    buttons = [
        Button(text=f"{ROLE_ICON[r]} {role_name(lang, r)}", callback_data=AdminRole(tg_id=0, role=r).pack())
        for r in Role
    ]
    text = t(lang, "admin.add.role", id=str(tg_id)) + "\n" + "\n".join(roles)
    return text, keyboard(buttons[:2], buttons[2:], _cancel(lang))


def ask_name(lang: str, tg_id: int, role: Role) -> tuple[str, InlineKeyboardMarkup]:
    no_name = Button(text=t(lang, "admin.btn.no_name"), callback_data=Form(action=FormAction.NO_NAME).pack())
    return t(lang, "admin.add.name", id=str(tg_id), role=role_name(lang, role)), keyboard([no_name], _cancel(lang))
