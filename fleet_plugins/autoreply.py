"""An away message: answers private messages, once per chat per cooldown, outside working hours.

Configuration:

    {"text": "Away until Monday",   # required, 1-4096 characters
     "cooldown_minutes": 60,         # at most one reply per chat in this time (0: every message); default 60
     "hours": "09:00-18:00",         # optional working hours: no away message inside them
     "timezone": "Europe/Berlin"}    # IANA name the hours are in; default UTC

It answers incoming messages in private chats only, never bots and never the account's own messages. With
`hours`, it answers only outside them: "09:00-18:00" means silent from 09:00 to 17:59 and answering from 18:00
to 08:59; a range may wrap midnight ("22:00-06:00": a night shift). Without `hours` it always answers. When it
last answered each chat is kept in the plugin's store (`context.kv`), so the cooldown survives restarts and
moves to another worker.
"""

from __future__ import annotations

import re
from datetime import datetime
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telethon import events

NAME = "autoreply"
DESCRIPTION = "Away message in private chats: once per chat per cooldown, outside working hours"
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 4096},
        "cooldown_minutes": {"type": "number", "minimum": 0, "default": 60},
        "hours": {"type": "string"},
        "timezone": {"type": "string", "minLength": 1, "default": "UTC"},
    },
    "required": ["text"],
    "additionalProperties": False,
}

_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")


def parse_hours(value: str) -> tuple[clock_time, clock_time] | None:
    """("09:00-18:00") -> (09:00, 18:00); None when it is not HH:MM-HH:MM."""
    match = _HOURS.match(value.replace(" ", ""))
    if match is None:
        return None
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    return clock_time(start_h, start_m), clock_time(end_h, end_m)


def within(hours: tuple[clock_time, clock_time], moment: clock_time) -> bool:
    """Whether `moment` is inside the working hours [start, end); a range may wrap midnight."""
    start, end = hours
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def validate(config: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "hours" in config:
        hours = parse_hours(config["hours"])
        if hours is None:
            problems.append(f"hours: {config['hours']!r} is not HH:MM-HH:MM (24-hour clock), e.g. 09:00-18:00")
        elif hours[0] == hours[1]:
            problems.append("hours: the start and the end are the same; leave hours out to answer at any time")
    if _zone(config.get("timezone", "UTC")) is None:
        problems.append(f"timezone: {config.get('timezone')!r} is not a known IANA time zone, e.g. Europe/Berlin")
    return problems


def setup(client: Any, context: Any) -> None:
    config = context.config
    text: str = config["text"]
    cooldown = float(config["cooldown_minutes"]) * 60
    hours = parse_hours(config["hours"]) if "hours" in config else None
    zone = _zone(config["timezone"])
    answering: set[int] = set()  # chats with a reply being decided right now (two messages at once: one reply)

    @client.on(events.NewMessage(incoming=True, func=lambda event: event.is_private))
    async def away(event: Any) -> None:
        now = context.now()
        if hours is not None and within(hours, datetime.fromtimestamp(now, zone).time()):
            return
        chat = event.chat_id
        if chat in answering:
            return
        answering.add(chat)
        try:
            sender = await event.get_sender()
            if sender is None or getattr(sender, "bot", False) or getattr(sender, "is_self", False):
                return
            key = f"replied:{chat}"
            if cooldown > 0:
                last = await context.kv.get(key)
                if last is not None and now - float(last) < cooldown:
                    return
            await event.respond(text)
            if cooldown > 0:
                await context.kv.set(key, repr(now), ttl=cooldown)
            context.log.debug("answered chat %s", chat)
        finally:
            answering.discard(chat)
