"""The workers' pages of the admin bot: the paged list and one worker's card (its key included)."""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardMarkup

from backend.fleet import WorkersPage as WorkersPageView
from backend.fleet import WorkerView
from bot.callbacks import AccountsPage, Menu, MenuAction, WorkerAction, WorkerCard, WorkersPage
from bot.texts import t
from bot.views import Button, ago, back_to_menu, duration, keyboard, pager, worker_status


def workers_page(lang: str, page: WorkersPageView) -> tuple[str, InlineKeyboardMarkup]:
    add = [Button(text=t(lang, "btn.add_worker"), callback_data=Menu(action=MenuAction.ADD_WORKER).pack())]
    if not page.workers:
        return t(lang, "workers.empty"), keyboard(add, [back_to_menu(lang)])
    rows = [
        [
            Button(
                text=t(
                    lang,
                    "workers.row",
                    icon=("🟢" if w.status.value == "online" else "🔴") + ("" if w.is_active else "⏸"),
                    name=w.name,
                    running="?" if w.accounts_running is None else w.accounts_running,
                    total=w.accounts,
                ),
                callback_data=WorkerCard(id=w.id or 0).pack(),
            )
        ]
        for w in page.workers
    ]
    title = t(lang, "workers.title", page=page.page + 1, pages=page.pages, total=page.total)
    return title, keyboard(
        *rows, pager(lang, page.page, page.pages, lambda n: WorkersPage(page=n).pack()), add, [back_to_menu(lang)]
    )


def worker_card(lang: str, worker_id: int, view: WorkerView, rejected: int = 0) -> tuple[str, InlineKeyboardMarkup]:
    text = t(
        lang,
        "worker.card",
        name=escape(view.name),
        status=worker_status(lang, view),
        address=escape(view.address or "—"),
        heartbeat=ago(lang, view.seconds_since_heartbeat),
        version=escape(view.version or "—"),
        uptime=duration(lang, view.uptime_seconds),
        running="?" if view.accounts_running is None else view.accounts_running,
        total=view.accounts,
    )
    if view.key_pending is not None:
        text += "\n" + t(
            lang, "worker.key_untrusted", name=escape(view.name), pinned=view.key, pending=view.key_pending
        )
    elif view.key is not None:
        text += "\n" + t(lang, "worker.key", fingerprint=view.key)
    if rejected:
        text += "\n" + t(lang, "worker.rejected", count=rejected)

    def action(key: str, act: WorkerAction) -> Button:
        return Button(text=t(lang, key), callback_data=WorkerCard(id=worker_id, action=act).pack())

    toggle = (
        action("worker.btn.deactivate", WorkerAction.DEACTIVATE)
        if view.is_active
        else action("worker.btn.activate", WorkerAction.ACTIVATE)
    )
    remove = [action("worker.btn.remove", WorkerAction.REMOVE)] if view.status.value == "offline" else []
    return text, keyboard(
        [Button(text=t(lang, "worker.btn.accounts"), callback_data=AccountsPage(worker_id=worker_id).pack()), toggle],
        remove,
        [
            Button(text=t(lang, "btn.back"), callback_data=WorkersPage(page=0).pack()),
            Button(text=t(lang, "btn.refresh"), callback_data=WorkerCard(id=worker_id).pack()),
        ],
    )
