"""Texts and keyboards from service views: pure functions, so pages are cheap and testable without a bot."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from backend.account_views import AccountsPage as AccountsPageView
from backend.account_views import AccountView
from backend.fleet import FleetSummary, WorkerView
from backend.plugins_service import PluginRow
from bot.callbacks import (
    AccountAction,
    AccountCard,
    AccountsPage,
    Language,
    Menu,
    MenuAction,
    MoveTo,
    WizardMethod,
    WizardWorker,
    WorkerCard,
    WorkerOpAction,
    WorkerOps,
)
from bot.details import detail_text
from bot.texts import t
from common.details import Detail

Button = InlineKeyboardButton


def keyboard(*rows: list[Button]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[row for row in rows if row])


def ago(lang: str, seconds: float | None) -> str:
    if seconds is None:
        return t(lang, "ago.never")
    if seconds < 60:
        return t(lang, "ago.seconds", n=int(seconds))
    if seconds < 3600:
        return t(lang, "ago.minutes", n=int(seconds // 60))
    if seconds < 86400:
        return t(lang, "ago.hours", n=int(seconds // 3600))
    return t(lang, "ago.days", n=int(seconds // 86400))


def duration(lang: str, seconds: float | None) -> str:
    """How long, to the minute past an hour and to the second below it: "1 ч 2 мин", "7 мин 9 с"."""
    if seconds is None:
        return "—"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return t(lang, "duration.days", days=days, hours=hours)
    if hours:
        return t(lang, "duration.hours", hours=hours, minutes=minutes)
    return t(lang, "duration.minutes", minutes=minutes, seconds=int(seconds) % 60)


def worker_status(lang: str, view: WorkerView) -> str:
    text = t(lang, "status.online" if view.status.value == "online" else "status.offline")
    return text if view.is_active else f"{text} · {t(lang, 'status.deactivated')}"


def main_menu(
    lang: str, board: bool = False, proxies: bool = False, admins: bool = False, sandbox: bool = False
) -> tuple[str, InlineKeyboardMarkup]:
    """The main menu; `board`, `proxies` and `admins` (with the audit log) add those sections (when the bot has
    their services), `sandbox` the marker of a demo fleet on the Telegram sandbox. Each admin sees the buttons
    their role may press (`bot.keyboards`)."""

    def item(action: MenuAction, key: str) -> Button:
        return Button(text=t(lang, key), callback_data=Menu(action=action).pack())

    title = t(lang, "menu.title")
    return (t(lang, "menu.sandbox") + "\n" + title if sandbox else title), keyboard(
        [item(MenuAction.WORKERS, "menu.workers"), item(MenuAction.ACCOUNTS, "menu.accounts")],
        [item(MenuAction.ADD_ACCOUNT, "menu.add_account")],
        [item(MenuAction.PROXIES, "menu.proxies")] if proxies else [],
        [item(MenuAction.BOARD, "menu.board")] if board else [],
        [item(MenuAction.SUMMARY, "menu.summary"), item(MenuAction.LANGUAGE, "menu.language")],
        [item(MenuAction.ADMINS, "menu.admins"), item(MenuAction.AUDIT, "menu.audit")] if admins else [],
    )


def pager(lang: str, page: int, pages: int, callback_for: Callable[[int], str]) -> list[Button]:
    """◀️ refresh ▶️ for a paged list; `callback_for(page)` is that page's packed callback data."""
    row = []
    if page > 0:
        row.append(Button(text=t(lang, "btn.prev"), callback_data=callback_for(page - 1)))
    row.append(Button(text=t(lang, "btn.refresh"), callback_data=callback_for(page)))
    if page < pages - 1:
        row.append(Button(text=t(lang, "btn.next"), callback_data=callback_for(page + 1)))
    return row


def back_to_menu(lang: str) -> Button:
    return Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())


def confirm(
    lang: str, text: str, yes: str, no: str, yes_key: str = "btn.yes_remove"
) -> tuple[str, InlineKeyboardMarkup]:
    return text, keyboard(
        [
            Button(text=t(lang, yes_key), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=no),
        ]
    )


STATUS_ICON = {
    "running": "🟢",
    "starting": "⏳",
    "stopping": "⏳",
    "stopped": "⚪",
    "login_pending": "🔑",
    "error": "⚠️",
    "unauthorized": "🚫",
    "banned": "⛔",
    "flood_wait": "🐢",
    "lost": "❓",
    "unknown": "❔",
}


def account_who(view: AccountView) -> str:
    parts = [escape(view.name)] if view.name else []
    if view.username:
        parts.append(f"@{escape(view.username)}")
    return " ".join(parts) if parts else "—"


def accounts_page(
    lang: str, page: AccountsPageView, worker_id: int, worker_name: str | None, operations: bool = True
) -> tuple[str, InlineKeyboardMarkup]:
    """A page of accounts (all, or a worker's: then with "check all" and "end other sessions for all" when the
    bot has the operations service)."""
    back = (
        Button(text=t(lang, "btn.back"), callback_data=WorkerCard(id=worker_id).pack())
        if worker_id
        else back_to_menu(lang)
    )
    if not page.accounts:
        return t(lang, "accounts.empty"), keyboard([back])
    rows = [
        [
            Button(
                text=" ".join(
                    part
                    for part in (STATUS_ICON.get(a.status, ""), a.phone_masked, f"@{a.username}" if a.username else "")
                    if part
                ),
                callback_data=AccountCard(id=a.id).pack(),
            )
        ]
        for a in page.accounts
    ]
    if worker_name:
        title = t(
            lang,
            "accounts.title.worker",
            worker=escape(worker_name),
            page=page.page + 1,
            pages=page.pages,
            total=page.total,
        )
    else:
        title = t(lang, "accounts.title", page=page.page + 1, pages=page.pages, total=page.total)
    fleet_wide = (
        [
            Button(
                text=t(lang, "accounts.btn.check_all"),
                callback_data=WorkerOps(worker_id=worker_id, action=WorkerOpAction.CHECK).pack(),
            ),
            Button(
                text=t(lang, "accounts.btn.end_sessions_all"),
                callback_data=WorkerOps(worker_id=worker_id, action=WorkerOpAction.END_SESSIONS).pack(),
            ),
        ]
        if worker_id and operations
        else []
    )
    return title, keyboard(
        *rows,
        pager(lang, page.page, page.pages, lambda n: AccountsPage(worker_id=worker_id, page=n).pack()),
        fleet_wide,
        [back],
    )


def account_status(lang: str, status: str) -> str:
    key = f"st.{status}"
    return t(lang, key) if key in _KNOWN_STATUS_KEYS else escape(status)


_KNOWN_STATUS_KEYS = {f"st.{s}" for s in STATUS_ICON}


# --- the last check and the plugins, on the card

VERDICT_ICON = {"ok": "✅", "limited": "⚠️", "restricted": "🔒", "unauthorized": "🚫", "banned": "⛔"}
SPAM_WORDS = ("free", "limited", "unknown")
PLUGIN_STATE_KEYS = {
    "running": "plugin.state.running",
    "failing": "plugin.state.failing",
    "blocked": "plugin.state.blocked",
    "error": "plugin.state.error",
}


def verdict_text(lang: str, verdict: str | None) -> str:
    """A check's verdict with its icon: "⚠️ limited (spam)"."""
    if verdict in VERDICT_ICON:
        return t(lang, f"verdict.{verdict}")
    return escape(verdict or "?")


def check_details(lang: str, result: Mapping[str, Any]) -> str:
    """What a check found besides its verdict, in `lang`, from its result (`celery_app.operations.check`):
    "spam: free · 2 other sessions · premium"."""
    parts: list[str] = []
    if result.get("restriction"):
        parts.append(t(lang, "check.restricted", reason=escape(str(result["restriction"])[:80])))
    if result.get("authorized") and not result.get("banned"):
        word = str(result.get("spam") or "unknown")
        spam = t(lang, f"check.spam.{word}") if word in SPAM_WORDS else escape(word)
        reason = Detail.from_json(result.get("spam_reason")) if word == "unknown" else None
        if reason is not None:  # why @SpamBot could not tell
            spam = t(lang, "check.spam.unknown_because", reason=detail_text(lang, reason))
        parts.append(t(lang, "check.spam", status=spam))
        others = result.get("other_sessions")
        if isinstance(others, int) and not isinstance(others, bool):
            parts.append(t(lang, "check.other_sessions", n=others))
        if result.get("premium"):
            parts.append(t(lang, "check.premium"))
    return " · ".join(parts)


def check_line(lang: str, view: AccountView, now: datetime | None = None) -> str:
    if not view.check_verdict:
        return t(lang, "check.never")
    seconds = None
    if view.checked_at is not None:
        checked = view.checked_at if view.checked_at.tzinfo else view.checked_at.replace(tzinfo=UTC)
        seconds = max(0.0, ((now or now_utc()) - checked).total_seconds())
    details = check_details(lang, view.check_result)
    return t(
        lang,
        "check.line",
        verdict=verdict_text(lang, view.check_verdict),
        ago=ago(lang, seconds),
        details=f" — {details}" if details else "",
    )


def plugin_state(lang: str, row: PluginRow) -> str:
    """One enabled plugin as its worker reports it: 🟢 running, ⚠️ failing (last error), 🐢, ❌, ⚪ not running."""
    name = escape(row.plugin)
    live = row.live
    if live is None:
        return t(lang, "plugin.state.stopped", name=name)
    key = PLUGIN_STATE_KEYS.get(live.state)
    if key is None:
        return f"❔ {name} ({escape(live.state)})"
    error = detail_text(lang, live.coded, (live.last_error or "?")[:160])
    return t(lang, key, name=name, error=error, count=live.errors)


def plugins_line(lang: str, rows: Sequence[PluginRow]) -> str:
    return t(lang, "plugins.line", plugins=", ".join(plugin_state(lang, row) for row in rows)) if rows else ""


def operation_rows(lang: str, account_id: int, with_plugins: bool = True) -> list[list[Button]]:
    """The card's operations: two rows of three, short labels (they must fit a phone's width)."""

    def action(key: str, act: AccountAction) -> Button:
        return Button(text=t(lang, key), callback_data=AccountCard(id=account_id, action=act).pack())

    return [
        [
            action("account.btn.check", AccountAction.CHECK),
            action("account.btn.sessions", AccountAction.SESSIONS),
            action("account.btn.end_sessions", AccountAction.END_SESSIONS),
        ],
        [
            action("account.btn.two_fa", AccountAction.TWO_FA),
            action("account.btn.profile", AccountAction.PROFILE),
            *([action("account.btn.plugins", AccountAction.PLUGINS)] if with_plugins else []),
        ],
    ]


def account_card(
    lang: str,
    view: AccountView,
    worker_id: int | None,
    override_status: str | None = None,
    plugins: Sequence[PluginRow] = (),
    extra_rows: Sequence[list[Button]] = (),
    operations: bool = True,
    with_plugins: bool = True,
) -> tuple[str, InlineKeyboardMarkup]:
    """The card; `plugins` are the account's enabled plugins with their live state, `extra_rows` buttons an
    operation's outcome offers (shown above the card's own). `operations`/`with_plugins`: whether the bot
    has those services (their buttons)."""
    detail = ""
    if override_status is None and (view.coded is not None or view.detail):
        detail = f" — {detail_text(lang, view.coded, view.detail)}"
    if override_status is None and view.status == "flood_wait" and view.flood_wait_until:
        until = view.flood_wait_until.astimezone(UTC).strftime("%H:%M:%S UTC")
        detail += "\n" + t(lang, "account.flood_until", until=until)
    if view.device is not None:
        device = view.device
        detail += "\n" + t(
            lang,
            "account.device",
            model=escape(device.device_model),
            system=escape(device.system_version),
            app=escape(device.app_version),
            language=escape(device.lang_code),
            system_lang=escape(device.system_lang_code),
        )
    text = t(
        lang,
        "account.card",
        phone=escape(view.phone_masked),
        who=account_who(view),
        worker=escape(view.worker or "—"),
        status=override_status or account_status(lang, view.status),
        detail=detail,
    )
    text += "\n" + t(lang, "account.password_on_file" if view.has_password else "account.password_none")
    text += "\n" + check_line(lang, view)
    if plugins:
        text += "\n" + plugins_line(lang, plugins)

    def action(key: str, act: AccountAction) -> Button:
        return Button(text=t(lang, key), callback_data=AccountCard(id=view.id, action=act).pack())

    live = view.status in ("running", "starting", "flood_wait", "error") and view.desired_state == "running"
    first = (
        [action("account.btn.stop", AccountAction.STOP)] if live else [action("account.btn.start", AccountAction.START)]
    )
    first.append(action("account.btn.restart", AccountAction.RESTART))
    operation_buttons = operation_rows(lang, view.id, with_plugins) if view.has_session and operations else []
    return text, keyboard(
        *extra_rows,
        first,
        [action("account.btn.move", AccountAction.MOVE), action("account.btn.remove", AccountAction.REMOVE)],
        *operation_buttons,
        [action("account.btn.export", AccountAction.EXPORT)] if view.has_session else [],
        [
            Button(text=t(lang, "btn.back"), callback_data=AccountsPage(worker_id=worker_id or 0).pack()),
            Button(text=t(lang, "btn.refresh"), callback_data=AccountCard(id=view.id).pack()),
        ],
    )


def when_back(lang: str, account_id: int, reason: str) -> tuple[str, InlineKeyboardMarkup]:
    """`reason` is already safe HTML (from `error_text`)."""
    return t(lang, "account.unavailable", reason=reason), keyboard(
        [
            Button(
                text=t(lang, "account.btn.when_back"),
                callback_data=AccountCard(id=account_id, action=AccountAction.START_WHEN_BACK).pack(),
            )
        ],
        [Button(text=t(lang, "btn.back"), callback_data=AccountCard(id=account_id).pack())],
    )


def move_picker(lang: str, view: AccountView, targets: list[tuple[int, str]]) -> tuple[str, InlineKeyboardMarkup]:
    back = [Button(text=t(lang, "btn.back"), callback_data=AccountCard(id=view.id).pack())]
    if not targets:
        return t(lang, "account.move.none"), keyboard(back)
    rows = [
        [Button(text=f"🟢 {name}", callback_data=MoveTo(id=view.id, worker_id=wid).pack())] for wid, name in targets
    ]
    return t(lang, "account.move.pick", phone=escape(view.phone_masked)), keyboard(*rows, back)


def summary(lang: str, data: FleetSummary) -> tuple[str, InlineKeyboardMarkup]:
    accounts = ", ".join(
        f"{account_status(lang, status)}: {count}" for status, count in sorted(data.accounts_by_status.items())
    ) or t(lang, "summary.no_accounts")
    deactivated = t(lang, "summary.deactivated", n=data.workers_deactivated) if data.workers_deactivated else ""
    text = t(
        lang,
        "summary",
        online=data.workers_online,
        offline=data.workers_offline,
        deactivated=deactivated,
        accounts=accounts,
    )
    return text, keyboard(
        [
            Button(text=t(lang, "btn.refresh"), callback_data=Menu(action=MenuAction.SUMMARY).pack()),
            back_to_menu(lang),
        ]
    )


def language_picker(lang: str) -> tuple[str, InlineKeyboardMarkup]:
    return t(lang, "language.pick"), keyboard(
        [
            Button(text="🇷🇺 Русский", callback_data=Language(code="ru").pack()),
            Button(text="🇬🇧 English", callback_data=Language(code="en").pack()),
        ]
    )


def wizard_workers(lang: str, workers: list[tuple[int, str]]) -> tuple[str, InlineKeyboardMarkup]:
    if not workers:
        return t(lang, "wizard.no_workers"), keyboard([back_to_menu(lang)])
    rows = [[Button(text=f"🟢 {name}", callback_data=WizardWorker(worker_id=wid).pack())] for wid, name in workers]
    return t(lang, "wizard.worker"), keyboard(*rows, [back_to_menu(lang)])


def wizard_methods(lang: str) -> tuple[str, InlineKeyboardMarkup]:
    return t(lang, "wizard.method"), keyboard(
        [Button(text=t(lang, "wizard.method.login"), callback_data=WizardMethod(method="login").pack())],
        [Button(text=t(lang, "wizard.method.import"), callback_data=WizardMethod(method="import").pack())],
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
