"""Alerts to admins from the fleet event log: workers offline/online, accounts banned/revoked/flood/error.

`build_alerts` turns a batch of new events into messages, grouping: when several workers drop (or accounts
fall into the same status) in one batch, admins get one summary, not one message each. A transition the
log folded (the same one again within the hour: a flapping account) is not alerted again; a flapping
worker is, with how often it happened. `AlertNotifier` polls the log and sends each alert to every admin in
their language.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from redis.exceptions import RedisError

from bot.details import status_detail
from bot.i18n import LanguageStore
from bot.services import BotServices
from bot.texts import t
from bot.views import STATUS_ICON, account_status
from celery_app import keys

log = logging.getLogger(__name__)

GROUP_AT = 3  # this many alike alerts in one batch become one summary
ALERTING_STATUSES = ("banned", "unauthorized", "flood_wait", "error")
POLL_SECONDS = 1.0
GROUP_WINDOW_SECONDS = 1.5


@dataclass(frozen=True)
class EventLine:
    kind: str
    subject: str
    detail: str
    repeat_count: int = 1


@dataclass
class Alert:
    key: str
    values: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    detail: str = ""  # the event's detail as the backend wrote it; shown in the admin's language
    detail_format: str = " ({})"

    def render(self, lang: str) -> str:
        values = dict(self.values)
        if self.status is not None:
            values["status"] = account_status(lang, self.status)
        values["detail"] = self.detail_format.format(escape(status_detail(lang, self.detail))) if self.detail else ""
        return t(lang, self.key, **values)


def build_alerts(events: Sequence[EventLine]) -> list[Alert]:
    offline: list[EventLine] = []
    online: list[EventLine] = []
    accounts: dict[str, list[EventLine]] = {}
    for event in events:
        if event.kind == "worker.offline":
            offline.append(event)
        elif event.kind == "worker.online":
            online.append(event)
        elif event.kind == "account.status" and event.repeat_count == 1:
            status = event.detail.split(":", 1)[0]
            if status in ALERTING_STATUSES:
                accounts.setdefault(status, []).append(event)
    alerts: list[Alert] = []
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
                reason = event.detail.split(":", 1)[1].strip() if ":" in event.detail else ""
                values = {"icon": STATUS_ICON[status], "id": account_id}
                alerts.append(Alert("alert.account", values, status, detail=reason, detail_format=" — {}"))
    return alerts


class AlertNotifier:
    def __init__(self, bot: Any, services: BotServices, admin_ids: frozenset[int], languages: LanguageStore) -> None:
        self.bot = bot
        self.services = services
        self.admin_ids = admin_ids
        self.languages = languages
        self.last_id: int | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - alerts must never take the bot down
                log.warning("alerts: %s", error)
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> int:
        if self.last_id is None:
            self.last_id = await self.services.call(self.services.workers.last_event_id)
            return 0
        events = await self.services.call(self.services.workers.events_since, self.last_id)
        if events and len(events) < 500:
            await asyncio.sleep(GROUP_WINDOW_SECONDS)  # let a wave of drops arrive, to group it
            events += await self.services.call(self.services.workers.events_since, events[-1].id)
        if not events:
            return 0
        self.last_id = events[-1].id
        alerts = build_alerts([EventLine(e.kind, e.subject, e.detail, e.repeat_count) for e in events])
        for alert in alerts:
            delivered = False
            for admin in sorted(self.admin_ids):
                lang = await self.languages.for_alerts(admin)
                try:
                    await self.bot.send_message(admin, alert.render(lang))
                    delivered = True
                except Exception as error:  # noqa: BLE001 - e.g. an admin who never opened the bot
                    log.warning("could not alert admin %d: %s", admin, error)
            if delivered:
                await self.services.call(self._count, alert)
        return len(alerts)

    def _count(self, alert: Alert) -> None:
        """Count it for the backend's /metrics (`fleet_alerts_sent_total{kind}`)."""
        kind = alert.key.removeprefix("alert.") + (f".{alert.status}" if alert.status else "")
        try:
            self.services.workers.redis.hincrby(keys.ALERTS_SENT, kind, 1)
        except RedisError as error:
            log.warning("alerts: could not count an alert (%s)", error)
