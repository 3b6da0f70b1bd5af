"""The anonymous board's tables (`board_*`): users, ads and their status history, invitations, chats, relayed
messages, blocks, reports, and the outbox of messages the board's bot has still to send.

A board user's Telegram id is never stored in clear: `tg_lookup` is a keyed hash (to find the user by the id
Telegram gives) and `tg_enc` the id encrypted with SECRET_KEY (to send them messages). Everything the Mini
App or the admin bot sees is named by an opaque `public_id`, never by a Telegram id or a row id.

Search has an index the models do not describe (migration 0008): on SQLite the FTS5 table `board_ads_fts`
kept in step with `board_ads.search_text` by triggers, on PostgreSQL a GIN index over its `tsvector`.
`is_modelled` tells schema comparisons to leave them alone. A later migration that rebuilds `board_ads` on
SQLite must create the triggers again.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from database.models import Base, UTCDateTime, utcnow

TITLE_MAX = 100
AD_TEXT_MAX = 2000
MESSAGE_MAX = 4096  # a Telegram text message
INVITE_MAX = 3500  # a first message: it reaches the author in one message with the ad's title above it
REASON_MAX = 500
SEARCH_OBJECTS = ("board_ads_fts", "ix_board_ads_search_tsv")


def is_modelled(name: str | None, type_: str, parent_names: object) -> bool:
    """False for the search index objects the migrations keep outside the models (and FTS5's own tables)."""
    return not (name and name.startswith(SEARCH_OBJECTS))


class AdStatus(enum.StrEnum):
    """An ad's status; `board.services.ad_states` says which changes are allowed, and who may make them."""

    OPEN = "open"
    CLOSED = "closed"  # by its author (who may reopen it for a short while)
    REPORTED = "reported"  # hidden by reports until a moderator reviews it
    HIDDEN = "hidden"  # by a moderator (only a moderator unhides it)
    EXPIRED = "expired"  # past expires_at (set by `BoardService.expire_ads`, so listing needs only the status)


class InviteStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    # Between two people one of whom blocked the other: kept, answered as any first message is, never shown.
    SWALLOWED = "swallowed"
    WITHDRAWN = "withdrawn"  # its sender was banned before the author answered


class ChatStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class ReportStatus(enum.StrEnum):
    OPEN = "open"
    DISMISSED = "dismissed"  # unfounded: counts against its reporter's record
    ACTIONED = "actioned"  # upheld: counts for it
    REVIEWED = "reviewed"  # settled with its ad as a whole (restored, unhidden): counts neither way


class ReportTarget(enum.StrEnum):
    AD = "ad"
    INVITE = "invite"
    CHAT = "chat"
    REPORTER = "reporter"  # filed by the board itself: someone whose reports keep being dismissed


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # handed to the Bot API; a restart finds it so only if it died before the answer
    SENT = "sent"  # a row with a `dedup_key`, kept a day after it went so a redelivered update cannot queue it again
    FAILED = "failed"  # refused for good (kept a day, for the same reason)
    UNKNOWN = "unknown"  # was sending when the process died: maybe delivered, never sent again


class BoardUser(Base):
    __tablename__ = "board_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    tg_lookup: Mapped[str] = mapped_column(String(64), unique=True)
    tg_enc: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8), default="ru")
    banned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ban_reason: Mapped[str] = mapped_column(String(REASON_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BoardAd(Base):
    __tablename__ = "board_ads"
    __table_args__ = (
        Index("ix_board_ads_status_created_at", "status", "created_at"),
        Index("ix_board_ads_author_id_status", "author_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32), index=True)
    # Lower-cased title and text, for a portable substring search.
    # Title and text folded for search (`board.text.fold`); indexed outside the models (see the module).
    search_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=AdStatus.OPEN.value)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    # The open reports' weights (hundredths): the ad hides when they reach BOARD_HIDE_AFTER_REPORTS × 100.
    report_weight: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_from: Mapped[str] = mapped_column(String(16), default="")  # the status a reopen returns to


class BoardAdEvent(Base):
    """One change of an ad's status: from what, to what, by whom (a moderator, "author", "board") and why."""

    __tablename__ = "board_ad_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ad_id: Mapped[int] = mapped_column(ForeignKey("board_ads.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BoardInvite(Base):
    """The one first message a sender may ever write about an ad."""

    __tablename__ = "board_invites"
    __table_args__ = (
        UniqueConstraint("sender_id", "ad_id", name="uq_board_invites_sender_id_ad_id"),
        Index("ix_board_invites_sender_id_created_at", "sender_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    ad_id: Mapped[int] = mapped_column(ForeignKey("board_ads.id", ondelete="CASCADE"), index=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=InviteStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BoardChat(Base):
    """An accepted invitation: two users who see each other only by alias."""

    __tablename__ = "board_chats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    invite_id: Mapped[int] = mapped_column(ForeignKey("board_invites.id", ondelete="CASCADE"), unique=True)
    ad_id: Mapped[int] = mapped_column(ForeignKey("board_ads.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"), index=True)
    # What each side calls the other: the author calls the guest `author_alias`, the guest calls the author
    # `guest_alias` (each side's own name for its partner).
    author_alias: Mapped[str] = mapped_column(String(8))
    guest_alias: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=ChatStatus.ACTIVE.value)
    # A side that left without the other being told (a block): it no longer sees the chat, and nothing the
    # other side writes reaches it. The other side sees a partner who does not answer.
    silent_user_id: Mapped[int | None] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    ended_reason: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BoardMessage(Base):
    """One relayed message: its id on the sender's side and on the recipient's, so replies and edits land."""

    __tablename__ = "board_messages"
    __table_args__ = (
        Index("ix_board_messages_chat_id_sender_id_src_message_id", "chat_id", "sender_id", "src_message_id"),
        Index("ix_board_messages_chat_id_sender_id_dst_message_id", "chat_id", "sender_id", "dst_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("board_chats.id", ondelete="CASCADE"))
    sender_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    src_message_id: Mapped[int] = mapped_column(BigInteger)
    dst_message_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")  # text or caption, kept BOARD_HISTORY_DAYS for moderation
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class BoardBlock(Base):
    __tablename__ = "board_blocks"
    __table_args__ = (UniqueConstraint("blocker_id", "blocked_id", name="uq_board_blocks_blocker_id_blocked_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blocker_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    blocked_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BoardReport(Base):
    __tablename__ = "board_reports"
    __table_args__ = (
        Index("ix_board_reports_status_created_at", "status", "created_at"),
        Index("ix_board_reports_reporter_id_created_at", "reporter_id", "created_at"),
        # One report per person and thing reported, whatever the interleaving of requests.
        UniqueConstraint("reporter_id", "target_key", name="uq_board_reports_reporter_id_target_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    # None: filed by the board itself (a reporter whose reports keep being dismissed).
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    reported_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(16))
    target_key: Mapped[str] = mapped_column(String(40))  # "ad:17", "invite:4", "chat:9", "reporter:3"
    weight: Mapped[int] = mapped_column(Integer, default=100)  # hundredths; see `board.services.reports`
    ad_id: Mapped[int | None] = mapped_column(ForeignKey("board_ads.id", ondelete="CASCADE"))
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("board_invites.id", ondelete="CASCADE"))
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("board_chats.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="")
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str] = mapped_column(String(64), default="")


class BoardOutbox(Base):
    """A message the board's bot has still to send, kept until Telegram took it (or refused it for good).

    Written in the same transaction as what caused it, by any process (the board, the admin bot, the CLI);
    the board's bot sends it (`board.bot.outbox`). `recipient_id` is a board user — never a Telegram id — and
    `payload` a JSON document of what to say (`board.services.outbox`). `dedup_key` lets an update Telegram
    delivers twice queue its message once.
    """

    __tablename__ = "board_outbox"
    # Ids only grow, never reused after a delete (SQLite's AUTOINCREMENT): the sender loads rows by id.
    __table_args__ = (Index("ix_board_outbox_state_id", "state", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default=OutboxState.PENDING.value)
    dedup_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
