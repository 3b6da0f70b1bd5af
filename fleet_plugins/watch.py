"""Watch chats for keywords or regular expressions and tell the admins, with a link to the message.

Configuration:

    {"chats": [-1001234567890, "@somechannel"],   # chat ids (as Telegram marks them) or usernames; [] = all
     "patterns": ["invoice", "/order #\\d+/"]}      # required, not empty

A pattern is a plain keyword, matched anywhere in the text ignoring case, or a regular expression between
slashes (`/.../`, case-sensitive; `/.../i` ignores case). Each incoming message that matches becomes an alert
event: "<chat>: <the text around the match> <link>", the link being https://t.me/<username>/<id> in a public
group or channel and https://t.me/c/<id>/<id> in a private one (private chats and basic groups have none).
"""

from __future__ import annotations

import re
from typing import Any

from telethon import events, utils
from telethon.tl import types

NAME = "watch"
DESCRIPTION = "Keywords or regexes in chosen chats: an alert to the admins with a link to the message"
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "chats": {
            "type": "array",
            "items": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]},
            "default": [],
        },
        "patterns": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    },
    "required": ["patterns"],
    "additionalProperties": False,
}

EXCERPT = 60  # characters kept on each side of the match
_REGEX = re.compile(r"^/(.+)/(i?)$", re.DOTALL)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A keyword (case-insensitive) or `/regex/` (`/regex/i`) as a compiled expression; raises re.error."""
    match = _REGEX.match(pattern)
    if match is None:
        return re.compile(re.escape(pattern), re.IGNORECASE)
    return re.compile(match.group(1), re.IGNORECASE if match.group(2) else 0)


def validate(config: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for index, pattern in enumerate(config.get("patterns", [])):
        try:
            compile_pattern(pattern)
        except re.error as error:
            problems.append(f"patterns[{index}]: {pattern} is not a valid regular expression: {error}")
    return problems


def chat_filter(chats: list[int | str]) -> tuple[set[int], set[str]]:
    """The configured chats as marked ids (a bare positive id matches a user, a group or a channel) and
    lower-case usernames."""
    ids: set[int] = set()
    usernames: set[str] = set()
    for chat in chats:
        if isinstance(chat, str) and re.fullmatch(r"-?\d+", chat.strip()):
            chat = int(chat)
        if isinstance(chat, int):
            if chat < 0:
                ids.add(chat)
            else:
                ids.update({chat, -chat, utils.get_peer_id(types.PeerChannel(chat))})
        else:
            usernames.add(chat.strip().removeprefix("https://t.me/").lstrip("@").lower())
    return ids, usernames


def message_link(chat: Any, chat_id: int, message_id: int) -> str | None:
    """The t.me link to a message in a group or channel; None in private chats and basic groups."""
    real_id, peer = utils.resolve_id(chat_id)
    if peer is not types.PeerChannel:
        return None
    username = getattr(chat, "username", None)
    if username:
        return f"https://t.me/{username}/{message_id}"
    return f"https://t.me/c/{real_id}/{message_id}"


def chat_title(chat: Any, chat_id: int) -> str:
    title = getattr(chat, "title", None)
    if title:
        return str(title)
    name = " ".join(part for part in (getattr(chat, "first_name", None), getattr(chat, "last_name", None)) if part)
    username = getattr(chat, "username", None)
    return name or (f"@{username}" if username else str(chat_id))


def excerpt(text: str, match: re.Match[str]) -> str:
    start, end = max(0, match.start() - EXCERPT), min(len(text), match.end() + EXCERPT)
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")


def setup(client: Any, context: Any) -> None:
    patterns = [compile_pattern(pattern) for pattern in context.config["patterns"]]
    ids, usernames = chat_filter(context.config["chats"])

    @client.on(events.NewMessage(incoming=True))
    async def watch(event: Any) -> None:
        text = event.raw_text or ""
        if not text:
            return
        found = next((match for pattern in patterns if (match := pattern.search(text))), None)
        if found is None:
            return
        chat = await event.get_chat()
        if (ids or usernames) and event.chat_id not in ids:
            username = (getattr(chat, "username", None) or "").lower()
            if not username or username not in usernames:
                return
        link = message_link(chat, event.chat_id, event.message.id)
        line = f"{chat_title(chat, event.chat_id)}: {excerpt(text, found)}"
        context.emit("match", f"{line} {link}" if link else line, alert=True)
