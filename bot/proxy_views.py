"""The Proxies page's texts and keyboards: the pool's list (paged), a proxy's card with its health, last error and
recent events, the removal's confirmations and what a check found. Pure functions over the proxies service's
views, like `bot.views`. A proxy is only ever shown as the service's `display` (scheme://host:port, the user
masked): its URL and credentials never reach the bot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from aiogram.types import InlineKeyboardMarkup

from backend.fleet import EventView
from backend.proxies_service import CheckView, Pinned, ProxyView
from backend.proxy_health import probe_detail
from bot.callbacks import Menu, MenuAction, ProxiesPage, ProxyAction, ProxyCard
from bot.details import detail_text
from bot.texts import has_text, t
from bot.views import Button, ago, keyboard

PER_PAGE = 10
EVENTS_SHOWN = 5
MOVES_SHOWN = 10
STATE_ICON = {"alive": "🟢", "slow": "🟡", "dead": "🔴", "unknown": "⚪"}


@dataclass(frozen=True)
class PoolPage:
    """One page of the pool, by id."""

    proxies: Sequence[ProxyView]
    page: int  # from 0
    pages: int
    total: int


def pool_page(proxies: Sequence[ProxyView], page: int, per_page: int = PER_PAGE) -> PoolPage:
    """Page `page` of the pool (clamped to the pages there are)."""
    pages = max(1, -(-len(proxies) // per_page))
    page = min(max(page, 0), pages - 1)
    return PoolPage(proxies[page * per_page : (page + 1) * per_page], page, pages, len(proxies))


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _seconds_since(moment: datetime | None, now: datetime | None) -> float | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return max(0.0, (_now(now) - aware).total_seconds())


def state_text(lang: str, state: str) -> str:
    """A proxy's state with its emoji: "🟢 работает"."""
    key = f"proxy.state.{state}"
    return t(lang, key) if has_text(lang, key) else f"❔ {escape(state)}"


def latency_text(lang: str, latency_ms: float | None) -> str:
    return t(lang, "proxy.latency", ms=round(latency_ms)) if latency_ms is not None else "—"


def load_text(lang: str, view: ProxyView) -> str:
    """Accounts on it of its cap: "3/10", "3/∞"."""
    if view.max_accounts is None:
        return t(lang, "proxy.load.uncapped", accounts=view.accounts)
    return t(lang, "proxy.load", accounts=view.accounts, cap=view.max_accounts)


def probe_error_text(lang: str, code: str) -> str:
    """Why a check failed, from its code (`celery_app.proxy_health.PROBE_ERRORS`)."""
    return detail_text(lang, probe_detail(code))


def _back_to_menu(lang: str) -> Button:
    return Button(text=t(lang, "btn.menu"), callback_data=Menu(action=MenuAction.MAIN).pack())


def _pager(lang: str, page: PoolPage) -> list[Button]:
    row = []
    if page.page > 0:
        row.append(Button(text=t(lang, "btn.prev"), callback_data=ProxiesPage(page=page.page - 1).pack()))
    row.append(Button(text=t(lang, "btn.refresh"), callback_data=ProxiesPage(page=page.page).pack()))
    if page.page < page.pages - 1:
        row.append(Button(text=t(lang, "btn.next"), callback_data=ProxiesPage(page=page.page + 1).pack()))
    return row


def proxies_page(
    lang: str, proxies: Sequence[ProxyView], page: int, note: str = "", now: datetime | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    """The pool, PER_PAGE proxies a page: a line each with its state, group, latency, load and last check, and a
    button each to its card; the empty pool says how to add one. `note` (safe HTML) goes under the title."""
    if not proxies:
        text = t(lang, "proxies.empty") + (f"\n\n{note}" if note else "")
        return text, keyboard([_back_to_menu(lang)])
    shown = pool_page(proxies, page)
    lines = [t(lang, "proxies.title", page=shown.page + 1, pages=shown.pages, total=shown.total)]
    if note:
        lines.append(note)
    for view in shown.proxies:
        lines.append(
            t(
                lang,
                "proxies.row",
                state=state_text(lang, view.state),
                id=view.id,
                proxy=escape(view.display),
                group=escape(view.group),
                latency=latency_text(lang, view.latency_ms),
                load=load_text(lang, view),
                checked=ago(lang, _seconds_since(view.checked_at, now)),
            )
        )
    rows = [
        [
            Button(
                text=f"{STATE_ICON.get(view.state, '❔')} #{view.id} {view.display}",
                callback_data=ProxyCard(id=view.id, page=shown.page).pack(),
            )
        ]
        for view in shown.proxies
    ]
    check_all = Button(
        text=t(lang, "proxies.btn.check_all"), callback_data=ProxiesPage(page=shown.page, check=True).pack()
    )
    return "\n\n".join(lines), keyboard(*rows, _pager(lang, shown), [check_all], [_back_to_menu(lang)])


def event_line(lang: str, event: EventView, now: datetime | None = None) -> str:
    suffix = event.kind.split(".", 1)[-1]
    key = f"proxy.event.{suffix}"
    kind = t(lang, key) if has_text(lang, key) else escape(event.kind)
    said = detail_text(lang, event.coded, event.detail)
    return t(
        lang,
        "proxy.event",
        when=ago(lang, _seconds_since(event.latest, now)),
        kind=kind,
        detail=f": {said}" if said else "",
        count=event.count,
    )


def proxy_card(
    lang: str,
    view: ProxyView,
    events: Sequence[EventView] = (),
    page: int = 0,
    note: str = "",
    extra_rows: Sequence[list[Button]] = (),
    now: datetime | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    """A proxy's card: its facts, its last error, its latest events, `note` (safe HTML) under them, and Check,
    Remove, Back; `extra_rows` are buttons the note offers (shown above the card's own)."""
    text = t(
        lang,
        "proxy.card",
        id=view.id,
        state=state_text(lang, view.state),
        proxy=escape(view.display),
        group=escape(view.group),
        load=load_text(lang, view),
        latency=latency_text(lang, view.latency_ms),
        checked=ago(lang, _seconds_since(view.checked_at, now)),
    )
    if view.error:
        text += "\n" + t(lang, "proxy.last_error", error=probe_error_text(lang, view.error), failures=view.failures)
    if events:
        text += "\n\n" + t(lang, "proxy.events")
        text += "".join("\n" + event_line(lang, event, now) for event in events[:EVENTS_SHOWN])
    if note:
        text += "\n\n" + note

    def action(key: str, act: ProxyAction) -> Button:
        return Button(text=t(lang, key), callback_data=ProxyCard(id=view.id, action=act, page=page).pack())

    return text, keyboard(
        *extra_rows,
        [action("proxy.btn.check", ProxyAction.CHECK), action("proxy.btn.remove", ProxyAction.REMOVE)],
        [
            Button(text=t(lang, "btn.back"), callback_data=ProxiesPage(page=page).pack()),
            Button(text=t(lang, "btn.refresh"), callback_data=ProxyCard(id=view.id, page=page).pack()),
        ],
    )


def reassign_row(lang: str, view: ProxyView, page: int) -> list[Button]:
    """The offer a refused removal shows: remove it and move its accounts to other proxies of its group."""
    data = ProxyCard(id=view.id, action=ProxyAction.REASSIGN, page=page).pack()
    return [Button(text=t(lang, "proxy.btn.reassign", count=view.accounts), callback_data=data)]


def _confirm(lang: str, text: str, yes: str, page: int, proxy_id: int) -> tuple[str, InlineKeyboardMarkup]:
    return text, keyboard(
        [
            Button(text=t(lang, "btn.yes_remove"), callback_data=yes),
            Button(text=t(lang, "btn.cancel"), callback_data=ProxyCard(id=proxy_id, page=page).pack()),
        ]
    )


def remove_confirm(lang: str, view: ProxyView, page: int) -> tuple[str, InlineKeyboardMarkup]:
    yes = ProxyCard(id=view.id, action=ProxyAction.REMOVE_CONFIRMED, page=page).pack()
    text = t(lang, "proxy.remove.confirm", id=view.id, proxy=escape(view.display))
    return _confirm(lang, text, yes, page, view.id)


def reassign_confirm(lang: str, view: ProxyView, page: int) -> tuple[str, InlineKeyboardMarkup]:
    yes = ProxyCard(id=view.id, action=ProxyAction.REASSIGN_CONFIRMED, page=page).pack()
    text = t(
        lang,
        "proxy.reassign.confirm",
        id=view.id,
        proxy=escape(view.display),
        group=escape(view.group),
        count=view.accounts,
    )
    return _confirm(lang, text, yes, page, view.id)


def removed_note(lang: str, proxy_id: int, moved: Sequence[Pinned]) -> str:
    """What a removal did: the proxy gone, and where each of its accounts went."""
    lines = [t(lang, "proxy.removed", id=proxy_id)]
    changed = [item for item in moved if item.changed]
    if changed:
        lines.append(t(lang, "proxy.moved", count=len(changed)))
        lines += [
            t(lang, "proxy.moved.line", account=item.account_id, after=escape(item.after or "—"))
            for item in changed[:MOVES_SHOWN]
        ]
        if len(changed) > MOVES_SHOWN:
            lines.append(t(lang, "op.more", n=len(changed) - MOVES_SHOWN))
    return "\n".join(lines)


def checking_note(lang: str) -> str:
    return t(lang, "proxy.checking")


def checking_all_note(lang: str, count: int) -> str:
    return t(lang, "proxies.checking", count=count)


def check_note(lang: str, result: CheckView) -> str:
    """What one check found: passed with its latency, or why it failed; on which worker."""
    worker = escape(result.worker)
    if result.ok:
        return t(lang, "proxy.check.ok", latency=latency_text(lang, result.latency_ms), worker=worker)
    return t(lang, "proxy.check.failed", error=probe_error_text(lang, result.error), worker=worker)


def check_all_note(lang: str, results: Sequence[CheckView]) -> str:
    passed = sum(1 for result in results if result.ok)
    return t(lang, "proxies.checked", total=len(results), ok=passed, failed=len(results) - passed)
