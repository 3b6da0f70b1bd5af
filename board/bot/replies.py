"""How handlers answer people: every text goes into the outbox (durable before the update counts as handled)
and the outbox is woken. A reply queued while handling an update carries a key derived from the update, so a
redelivered update does not queue it twice. Only answers to button presses (`answerCallbackQuery`, not a
message) go to Telegram directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from board.bot.common import call
from board.bot.polling import next_dedup_key
from board.service import BoardService


def open_board(style: str = "inline") -> dict[str, object]:
    """A keyboard that opens the Mini App: on the message (`inline`) or under the input field (`keyboard`)."""
    return {"type": "open_board", "style": style}


def chooser(action: str, chats: list[tuple[str, str, str]], token: str = "") -> dict[str, object]:
    """One button per chat `(chat id, alias, ad title)`, for `action` (a `ChatAction` value)."""
    return {"type": "chooser", "action": action, "token": token, "chats": [list(chat) for chat in chats]}


class Replies:
    def __init__(self, service: BoardService, wake: Callable[[], None] = lambda: None) -> None:
        self.service = service
        self.wake = wake

    async def notice(
        self,
        user_id: int,
        key: str,
        values: dict[str, Any] | None = None,
        *,
        keyboard: dict[str, object] | None = None,
        reply_to: int | None = None,
    ) -> None:
        """Queue the catalogue text `key` for a board user (rendered in their language when sent)."""
        dedup = next_dedup_key()
        await call(
            self.service.enqueue_notice, user_id, key, values, keyboard=keyboard, reply_to=reply_to, dedup_key=dedup
        )
        self.wake()

    async def edit(
        self, user_id: int, message_id: int, key: str | None = None, values: dict[str, Any] | None = None
    ) -> None:
        """Queue an edit of a message the bot sent: its text replaced by `key` (buttons dropped), or only its
        buttons dropped."""
        dedup = next_dedup_key()
        await call(self.service.enqueue_own_edit, user_id, message_id, key, values, dedup)
        self.wake()
