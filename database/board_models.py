"""The anonymous board's tables (`board_*`): users, ads, invitations, chats, relayed messages, blocks, reports.

A board user's Telegram id is never stored in clear: `tg_lookup` is a keyed hash (to find the user by the id
Telegram gives) and `tg_enc` the id encrypted with SECRET_KEY (to send them messages). Everything the Mini
App or the admin bot sees is named by an opaque `public_id`, never by a Telegram id or a row id.
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
REASON_MAX = 500


class AdStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by its author
    HIDDEN = "hidden"  # by reports or a moderator
    EXPIRED = "expired"  # past expires_at (set by `BoardService.expire_ads`, so listing needs only the status)


class InviteStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class ChatStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class ReportStatus(enum.StrEnum):
    OPEN = "open"
    DISMISSED = "dismissed"
    ACTIONED = "actioned"


class ReportTarget(enum.StrEnum):
    AD = "ad"
    INVITE = "invite"
    CHAT = "chat"


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
    search_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=AdStatus.OPEN.value)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    # What each side calls the other: the author sees the guest as `guest_alias`, and the other way round.
    author_alias: Mapped[str] = mapped_column(String(8))
    guest_alias: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=ChatStatus.ACTIVE.value)
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
    __table_args__ = (Index("ix_board_reports_status_created_at", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"))
    reported_id: Mapped[int] = mapped_column(ForeignKey("board_users.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(16))
    ad_id: Mapped[int | None] = mapped_column(ForeignKey("board_ads.id", ondelete="CASCADE"))
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("board_invites.id", ondelete="CASCADE"))
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("board_chats.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(REASON_MAX), default="")
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str] = mapped_column(String(64), default="")
