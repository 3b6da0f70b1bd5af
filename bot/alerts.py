"""Alerts to admins from the fleet event log: workers offline/online, accounts banned/revoked/flood/error,
a check that found an account worse than before, a plugin's message to the admins, a plugin failing.

`build_alerts` turns a batch of new events into messages, grouping: when several workers drop (or accounts
fall into the same status, or get worse at a check, or have plugins failing) in one batch, admins get one
summary, not one message each. A transition the log folded (the same one again within the hour: a flapping
account) is not alerted again; a flapping worker is, with how often it happened. A plugin failing on an
account is alerted at most once an hour (its errors may differ each time, so the log does not fold them).
`AlertNotifier` polls the log and sends each alert, in their language, to the admins who can act on it: those
whose role may operate the fleet (operators and owners; `AdminsService.recipients`), but for those who muted
alerts for now (`/mute`, `bot.mutes`). New reports on the board (when the bot has its section) go to those who
may moderate it (moderators and owners), counted in one message per poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.details import detail_text
from bot.i18n import LanguageStore
from bot.mutes import MuteStore
from bot.services import BotServices
from bot.texts import t
from bot.views import STATUS_ICON, account_status, verdict_text
from celery_app import keys
from common.details import Detail, stored
from common.roles import Capability
from database.board_models import BoardReport, ReportStatus
from database.models import Account, FleetEventKind

log = logging.getLogger(__name__)

GROUP_AT = 3  # this many alike alerts in one batch become one summary
ALERTING_STATUSES = ("banned", "unauthorized", "flood_wait", "error")
POLL_SECONDS = 1.0
GROUP_WINDOW_SECONDS = 1.5
PLUGIN_MESSAGES_AT_ONCE = 10  # a plugin's messages to admins in one batch; the rest are counted
PLUGIN_ERROR_EVERY = 3600.0  # a plugin failing on an account is alerted once in this many seconds
_PLUGIN_ERRORS = {"plugin_failed": False, "plugin_blocked_loop": True}  # code -> whether the loop was blocked


@dataclass(frozen=True)
class EventLine:
    kind: str
    subject: str
    detail: Detail | None  # the event's detail as a code with parameters (`common.details`)
    repeat_count: int = 1

    def param(self, name: str) -> str:
        value = self.detail.params.get(name) if self.detail is not None else None
        return "" if value is None or isinstance(value, Detail) else str(value)


@dataclass
class Alert:
    key: str
    values: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    detail: Detail | None = None  # the event's detail; shown in the admin's language
    detail_format: str = " ({})"
    detail_name: str = "detail"  # the value the text shows the detail as
    verdicts: tuple[str, str] | None = None  # a check's verdicts, before and after (shown in the admin's words)

    def render(self, lang: str) -> str:
        values = dict(self.values)
        if self.status is not None:
            values["status"] = account_status(lang, self.status)
        if self.verdicts is not None:
            values["before"], values["after"] = (verdict_text(lang, verdict) for verdict in self.verdicts)
        shown = self.detail_format.format(detail_text(lang, self.detail)) if self.detail else ""
        values[self.detail_name] = shown or ("?" if self.detail_name != "detail" else "")
        return t(lang, self.key, **values)


def account_id_of(subject: str) -> int | None:
    number = subject.removeprefix("account:")
    return int(number) if number.isdigit() else None


def account_label(subject: str, phones: Mapping[int, str]) -> str:
    """How an alert names an account: its masked phone and id when the phone is known, else "#7" (safe HTML)."""
    account_id = account_id_of(subject)
    phone = phones.get(account_id) if account_id is not None else None
    number = escape(subject.removeprefix("account:"))
    return f"{escape(phone)} (#{number})" if phone else f"#{number}"


def plugin_error_of(said: Detail | None) -> tuple[str, bool, Detail | None] | None:
    """(plugin, blocked, error) from a `plugin.error` event's detail (`backend.reconciler.plugin_event`)."""
    if said is None or said.code not in _PLUGIN_ERRORS:
        return None
    cause = said.params.get("cause")
    return str(said.params.get("plugin", "?")), _PLUGIN_ERRORS[said.code], cause if isinstance(cause, Detail) else None


def _ids(group: Sequence[EventLine], limit: int = 30) -> str:
    ids = [escape(e.subject.removeprefix("account:")) for e in group]
    return ", #".join(ids[:limit]) + (" …" if len(ids) > limit else "")


def _operation_alerts(
    worse: list[EventLine], messages: list[EventLine], failing: list[EventLine], phones: Mapping[int, str]
) -> list[Alert]:
    alerts: list[Alert] = []
    if len(worse) >= GROUP_AT:
        alerts.append(Alert("alert.verdicts_worse", {"n": len(worse), "ids": _ids(worse)}))
    else:
        for event in worse:
            label = account_label(event.subject, phones)
            verdicts = (event.param("before"), event.param("after"))
            alerts.append(Alert("alert.verdict_worse", {"account": label}, verdicts=verdicts))
    for event in messages[:PLUGIN_MESSAGES_AT_ONCE]:
        values = {
            "plugin": escape(event.param("plugin")),
            "account": account_label(event.subject, phones),
            "text": escape(event.param("text")),
        }
        alerts.append(Alert("alert.plugin", values))
    if len(messages) > PLUGIN_MESSAGES_AT_ONCE:
        alerts.append(Alert("alert.plugin_more", {"n": len(messages) - PLUGIN_MESSAGES_AT_ONCE}))
    parsed = [(event, plugin_error_of(event.detail)) for event in failing]
    known = [(event, found) for event, found in parsed if found is not None]
    if len(known) >= GROUP_AT:
        items = ", ".join(f"{escape(found[0])} #{escape(e.subject.removeprefix('account:'))}" for e, found in known)
        alerts.append(Alert("alert.plugin_errors", {"n": len(known), "items": items}))
    else:
        for event, (plugin, blocked, error) in known:
            values = {"plugin": escape(plugin), "account": account_label(event.subject, phones)}
            key = "alert.plugin_blocked" if blocked else "alert.plugin_error"
            alerts.append(Alert(key, values, detail=error, detail_format="{}", detail_name="error"))
    return alerts


def build_alerts(events: Sequence[EventLine], phones: Mapping[int, str] | None = None) -> list[Alert]:
    """The alerts for a batch of new events; `phones` (account id -> masked phone) names accounts in the
    operations' and plugins' alerts."""
    offline: list[EventLine] = []
    online: list[EventLine] = []
    accounts: dict[str, list[EventLine]] = {}
    worse: list[EventLine] = []
    plugin_messages: list[EventLine] = []
    plugin_errors: list[EventLine] = []
    proxies: list[EventLine] = []
    key_changes: list[EventLine] = []
    for event in events:
        if event.kind == FleetEventKind.WORKER_OFFLINE:
            offline.append(event)
        elif event.kind == FleetEventKind.WORKER_KEY_CHANGED:
            key_changes.append(event)
        elif event.kind == FleetEventKind.WORKER_ONLINE:
            online.append(event)
        elif event.repeat_count > 1:
            continue  # the same again within the hour: said already
        elif event.kind == FleetEventKind.ACCOUNT_STATUS:
            status = event.param("status")
            if status in ALERTING_STATUSES:
                accounts.setdefault(status, []).append(event)
        elif event.kind == FleetEventKind.ACCOUNT_VERDICT_WORSE:
            worse.append(event)
        elif event.kind == FleetEventKind.PLUGIN_ALERT:
            plugin_messages.append(event)
        elif event.kind == FleetEventKind.PLUGIN_ERROR:
            plugin_errors.append(event)
        elif event.kind in _PROXY_ALERTS:
            proxies.append(event)
    alerts: list[Alert] = [
        Alert("alert.worker_key_changed", {"name": escape(event.subject)}, detail=event.detail) for event in key_changes
    ]
    for group, single_key, many_key in (
        (offline, "alert.worker_offline", "alert.workers_offline"),
        (online, "alert.worker_online", "alert.workers_online"),
    ):
        if len(group) >= GROUP_AT:
            names = ", ".join(escape(e.subject) for e in group[:20]) + (" …" if len(group) > 20 else "")
            alerts.append(Alert(many_key, {"n": len(group), "names": names}))
        else:
            for event in group:
                values = {"name": escape(event.subject), "repeats": event.repeat_count}
                key = f"{single_key}.again" if event.repeat_count > 1 else single_key
                alerts.append(Alert(key, values, detail=event.detail))
    for status, group in accounts.items():
        ids = [e.subject.removeprefix("account:") for e in group]
        if len(group) >= GROUP_AT:
            alerts.append(
                Alert(
                    "alert.accounts",
                    {"icon": STATUS_ICON[status], "n": len(group), "ids": ", #".join(ids[:30])},
                    status,
                )
            )
        else:
            for event, account_id in zip(group, ids, strict=True):
                cause = event.detail.params.get("cause") if event.detail is not None else None
                reason = cause if isinstance(cause, Detail) else None
                values = {"icon": STATUS_ICON[status], "id": account_id}
                alerts.append(Alert("alert.account", values, status, detail=reason, detail_format=" — {}"))
    for event in proxies:  # the pool's proxies (`backend.proxy_health`): dead, back, no spare for its accounts
        values = {"id": escape(event.subject.removeprefix("proxy:"))}
        alerts.append(Alert(_PROXY_ALERTS[event.kind], values, detail=event.detail, detail_format=": {}"))
    return alerts + _operation_alerts(worse, plugin_messages, plugin_errors, phones or {})


class PluginErrorThrottle:
    """Lets one `plugin.error` alert through per plugin and account in PLUGIN_ERROR_EVERY seconds."""

    def __init__(self, every: float = PLUGIN_ERROR_EVERY) -> None:
        self.every = every
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, event: EventLine, now: float) -> bool:
        if event.kind != FleetEventKind.PLUGIN_ERROR:
            return True
        found = plugin_error_of(event.detail)
        key = (found[0] if found else event.detail.text if event.detail else "", event.subject)
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last[key] = now
        if len(self._last) > 10_000:  # forget the oldest half; a restart forgets all, which is fine
            for stale in sorted(self._last, key=self._last.__getitem__)[:5_000]:
                del self._last[stale]
        return True


_PROXY_ALERTS = {
    FleetEventKind.PROXY_DEAD: "alert.proxy_dead",
    FleetEventKind.PROXY_ALIVE: "alert.proxy_alive",
    FleetEventKind.PROXY_NO_SPARE: "alert.proxy_no_spare",
}
_NAMED_KINDS = {FleetEventKind.ACCOUNT_VERDICT_WORSE, FleetEventKind.PLUGIN_ALERT, FleetEventKind.PLUGIN_ERROR}


class AlertNotifier:
    def __init__(
        self,
        bot: Any,
        services: BotServices,
        admin_ids: frozenset[int],
        languages: LanguageStore,
        mutes: MuteStore | None = None,
    ) -> None:
        """`admin_ids` (ADMIN_IDS) are owners: alerted whatever the admins table says (if it cannot be read)."""
        self.bot = bot
        self.services = services
        self.admin_ids = admin_ids
        self.languages = languages
        self.mutes = mutes
        self.last_id: int | None = None
        self.last_report_id: int | None = None
        self.plugin_errors = PluginErrorThrottle()

    async def recipients(self, capability: Capability = Capability.OPERATE) -> list[int]:
        """The admins to alert now: whose role holds `capability`, but for those muted."""
        found = set(self.admin_ids)
        if self.services.admins is not None:
            try:
                found |= set(await self.services.call(self.services.admins.recipients, capability))
            except Exception as error:  # noqa: BLE001 - the owners are alerted even so
                log.warning("alerts: could not read the admins table (%s); alerting the owners", error)
        if self.mutes is not None:
            try:
                found -= await self.mutes.muted(found)
            except RedisError as error:
                log.warning("alerts: could not read the mutes (%s)", error)
        return sorted(found)

    async def run(self) -> None:
        while True:
            for poll in (self.poll_once, self.poll_board):
                try:
                    await poll()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - alerts must never take the bot down
                    log.warning("alerts: %s", error)
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> int:
        if self.last_id is None:
            self.last_id = await self.services.call(self.services.fleet.last_event_id)
            return 0
        events = await self.services.call(self.services.fleet.events_since, self.last_id)
        if events and len(events) < 500:
            await asyncio.sleep(GROUP_WINDOW_SECONDS)  # let a wave of drops arrive, to group it
            events += await self.services.call(self.services.fleet.events_since, events[-1].id)
        if not events:
            return 0
        self.last_id = events[-1].id
        now = time.monotonic()
        lines = [EventLine(e.kind, e.subject, stored(e.detail_code, e.detail), e.repeat_count) for e in events]
        lines = [line for line in lines if self.plugin_errors.allow(line, now)]
        named = {account_id_of(line.subject) for line in lines if line.kind in _NAMED_KINDS}
        phones = await self.services.call(self._phones, {i for i in named if i is not None}) if named else {}
        alerts = build_alerts(lines, phones)
        admins = await self.recipients(Capability.OPERATE) if alerts else []
        for alert in alerts:
            delivered = False
            for admin in admins:
                lang = await self.languages.for_alerts(admin)
                try:
                    await self.bot.send_message(admin, alert.render(lang))
                    delivered = True
                except Exception as error:  # noqa: BLE001 - e.g. an admin who never opened the bot
                    log.warning("could not alert admin %d: %s", admin, error)
            if delivered:
                await self.services.call(self._count, alert)
        return len(alerts)

    async def poll_board(self) -> int:
        """Tell the board's moderators (and owners) how many reports came in since the last poll (0 or 1 alert)."""
        board = self.services.board
        if board is None:
            return 0
        newest, fresh = await self.services.call(new_open_reports, board.sessions, self.last_report_id)
        self.last_report_id = newest
        if not fresh:
            return 0
        alert = Alert("alert.board_reports", {"n": fresh})
        for admin in await self.recipients(Capability.MODERATE):
            try:
                await self.bot.send_message(admin, alert.render(await self.languages.for_alerts(admin)))
            except Exception as error:  # noqa: BLE001 - e.g. an admin who never opened the bot
                log.warning("could not alert admin %d: %s", admin, error)
        return 1

    def _phones(self, account_ids: Iterable[int]) -> dict[int, str]:
        """Masked phones of the accounts the alerts name (one query)."""
        ids = sorted(account_ids)
        if not ids:
            return {}
        with self.services.accounts.sessions() as session:
            rows = session.execute(select(Account.id, Account.phone_masked).where(Account.id.in_(ids))).all()
        return {account_id: phone for account_id, phone in rows}

    def _count(self, alert: Alert) -> None:
        """Count it for the backend's /metrics (`fleet_alerts_sent_total{kind}`)."""
        kind = alert.key.removeprefix("alert.") + (f".{alert.status}" if alert.status else "")
        try:
            self.services.fleet.redis.hincrby(keys.ALERTS_SENT, kind, 1)
        except RedisError as error:
            log.warning("alerts: could not count an alert (%s)", error)


def new_open_reports(sessions: sessionmaker[Session], after_id: int | None) -> tuple[int, int]:
    """(the newest report's id, how many reports after `after_id` are still open); none counted on the first call."""
    with sessions() as session:
        newest = session.scalar(select(func.max(BoardReport.id))) or 0
        if after_id is None or newest <= after_id:
            return newest, 0
        fresh = session.scalar(
            select(func.count())
            .select_from(BoardReport)
            .where(BoardReport.id > after_id, BoardReport.id <= newest, BoardReport.status == ReportStatus.OPEN.value)
        )
        return newest, int(fresh or 0)
