"""The workers' pages of the admin bot: the paged list, one worker's card (its key and Redis login included) and
the worker's own Redis login, asked for and shown once."""

from __future__ import annotations

from html import escape

from aiogram.types import InlineKeyboardMarkup

from backend.fleet import WorkersPage as WorkersPageView
from backend.fleet import WorkerView
from backend.worker_logins import IssuedLogin
from bot.callbacks import AccountsPage, Menu, MenuAction, WorkerAction, WorkerCard, WorkersPage
from bot.texts import t
from bot.views import Button, ago, back_to_menu, confirm, duration, keyboard, pager, worker_status


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


def worker_card(
    lang: str, worker_id: int, view: WorkerView, rejected: int = 0, own_login: bool | None = None
) -> tuple[str, InlineKeyboardMarkup]:
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
    if own_login is not None:
        text += "\n" + t(lang, "worker.login_own" if own_login else "worker.login_shared")
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
        [action("worker.btn.login", WorkerAction.LOGIN)],
        remove,
        [
            Button(text=t(lang, "btn.back"), callback_data=WorkersPage(page=0).pack()),
            Button(text=t(lang, "btn.refresh"), callback_data=WorkerCard(id=worker_id).pack()),
        ],
    )


def added(lang: str, worker_id: int, name: str) -> tuple[str, InlineKeyboardMarkup]:
    """The worker was added: what to start on its server, and its own Redis login offered."""
    login = WorkerCard(id=worker_id, action=WorkerAction.LOGIN).pack()
    return t(lang, "worker.added", name=escape(name)), keyboard(
        [Button(text=t(lang, "worker.btn.login"), callback_data=login)]
    )


def login_question(lang: str, worker_id: int, name: str, has_one: bool | None) -> tuple[str, InlineKeyboardMarkup]:
    """Asks before a login is issued: a new one ends the current password at once."""
    text = t(lang, "worker.login.confirm", name=escape(name))
    if has_one:
        text += "\n\n" + t(lang, "worker.login.rotates", name=escape(name))
    yes = WorkerCard(id=worker_id, action=WorkerAction.LOGIN_CONFIRMED).pack()
    no = WorkerCard(id=worker_id).pack()
    return confirm(lang, text, yes, no, yes_key="worker.btn.issue_login")


def issued_login(lang: str, worker_id: int, issued: IssuedLogin) -> tuple[str, InlineKeyboardMarkup]:
    """The login, shown this once: REDIS_URL and the .env for the worker's server."""
    text = t(
        lang,
        "worker.login.issued",
        name=escape(issued.worker),
        user=escape(issued.username),
        url=escape(issued.redis_url),
        env=escape(issued.env.rstrip("\n")),
    )
    if issued.missed:
        text += "\n" + t(lang, "worker.login.missed", nodes=escape("; ".join(issued.missed)))
    if not issued.saved:
        text += "\n" + t(lang, "worker.login.unsaved")
    back = Button(text=t(lang, "btn.back"), callback_data=WorkerCard(id=worker_id).pack())
    return text, keyboard([back])
