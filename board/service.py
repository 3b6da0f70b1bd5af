"""The board's rules, as plain synchronous services over the database: ads, invitations, chats and the relay's
queue, blocks, reports, moderation, statistics and the outbox.

Nothing here knows Telegram, aiohttp or aiogram. Callers name users by `UserRef` (obtained from a Telegram id
that Telegram itself vouched for: a validated `initData` or an update), ads, invites, chats and reports by
their opaque public ids. No Telegram id leaves this package but through `telegram_id` and the outbox's
`claim_outbox`, when a message is being sent. Every refusal is a `BoardError`; a refused action changes
nothing. Limits the board promises (ads per person, first messages and reports a day, one first message per
ad, one report per thing) are enforced inside the database transaction that would break them.

`BoardService` is composed of one class per aggregate (`board.services.*`), each adding to the one before:
users → ads → outbox → invitations → chats → reports → moderation → statistics.
"""

from __future__ import annotations

from board.errors import BoardError
from board.services.ads import CATEGORIES, PER_PAGE
from board.services.invites import InviteSent
from board.services.stats import StatsService
from board.services.users import UsersService
from board.views import (
    AdsPage,
    AdView,
    BoardStats,
    ChatSide,
    Decision,
    EndedChat,
    ModerationOutcome,
    RelayMessage,
    RelayRoute,
    ReportView,
    UserRef,
)


class BoardService(StatsService, UsersService):
    """Every rule of the board over one database (see the module's docstring)."""


__all__ = [
    "CATEGORIES",
    "PER_PAGE",
    "AdView",
    "AdsPage",
    "BoardError",
    "BoardService",
    "BoardStats",
    "ChatSide",
    "Decision",
    "EndedChat",
    "InviteSent",
    "ModerationOutcome",
    "RelayMessage",
    "RelayRoute",
    "ReportView",
    "UserRef",
]
