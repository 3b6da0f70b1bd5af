"""The board's rules, as plain synchronous services over the database: ads, invitations, chats, relayed
messages, blocks, reports, moderation and statistics.

Nothing here knows Telegram, aiohttp or aiogram. Callers name users by `UserRef` (obtained from a Telegram id
that Telegram itself vouched for: a validated `initData` or an update), ads, invites, chats and reports by
their opaque public ids. Telegram ids leave this module only where a message must be sent to someone
(`Delivery.tg_id`), decrypted from the database at that moment. Every refusal is a `BoardError`; a refused
action changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from board.errors import BoardError, conflict, forbidden, invalid, not_found, too_many
from board.spam import spam_reason
from celery_app.crypto import SecretBox
from config import BoardLimits
from database.board_models import (
    AD_TEXT_MAX,
    MESSAGE_MAX,
    REASON_MAX,
    TITLE_MAX,
    AdStatus,
    BoardAd,
    BoardBlock,
    BoardChat,
    BoardInvite,
    BoardMessage,
    BoardReport,
    BoardUser,
    ChatStatus,
    InviteStatus,
    ReportStatus,
    ReportTarget,
)
from database.models import utcnow

CATEGORIES = ("services", "jobs", "sale", "housing", "dating", "other")
PER_PAGE = 20
ALIAS_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I/O/0/1
RECENT_TEXTS = 10
EXPIRY_SWEEP = timedelta(seconds=60)


def new_public_id() -> str:
    """12 URL-safe characters, never starting with `-` or `_` (a command line would take `-x…` for an option)."""
    while True:
        value = secrets.token_urlsafe(9)
        if value[0].isalnum():
            return value


def new_alias() -> str:
    return "#" + "".join(secrets.choice(ALIAS_ALPHABET) for _ in range(2))


@dataclass(frozen=True)
class UserRef:
    id: int
    public_id: str
    lang: str
    banned: bool


@dataclass(frozen=True)
class AdView:
    id: str
    title: str
    text: str
    category: str
    status: str
    created_at: datetime
    expires_at: datetime
    mine: bool
    invited: bool  # the viewer has already written to it

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "category": self.category,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "mine": self.mine,
            "invited": self.invited,
        }


@dataclass(frozen=True)
class AdsPage:
    ads: list[AdView]
    page: int
    pages: int
    total: int

    def to_json(self) -> dict[str, object]:
        return {"ads": [a.to_json() for a in self.ads], "page": self.page, "pages": self.pages, "total": self.total}


@dataclass(frozen=True)
class Delivery:
    """A message the bot must send: to whom (decrypted Telegram id), in which language, about what."""

    tg_id: int
    lang: str


@dataclass(frozen=True)
class InviteSent:
    invite_id: str
    ad_title: str
    message: str
    author: Delivery


@dataclass(frozen=True)
class ChatSide:
    """One side of a chat as its owner sees it: the partner's alias and how to reach the partner."""

    chat_id: str
    alias: str  # what this side calls the partner
    ad_title: str
    partner: Delivery
    partner_user_id: int


@dataclass(frozen=True)
class Decision:
    accepted: bool
    chat_id: str | None = None
    ad_title: str = ""
    author_alias: str = ""  # what the author calls the guest
    guest_alias: str = ""  # what the guest calls the author
    guest: Delivery | None = None


@dataclass(frozen=True)
class EndedChat:
    chat_id: str
    alias: str  # what the one who ended it called the partner
    ad_title: str
    partner: Delivery
    partner_alias: str  # what the partner called the one who ended it


@dataclass(frozen=True)
class ReportView:
    id: str
    target: str
    reason: str
    created_at: datetime
    status: str
    reported: str  # the reported user's opaque handle
    reporter: str
    reported_banned: bool
    ad_id: str | None
    ad_title: str
    content: str  # the ad's text, the invitation, or "" for a chat
    last_messages: list[tuple[str, str, str]] = field(default_factory=list)  # (handle, kind, text), oldest first

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "target": self.target,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "status": self.status,
            "reported": self.reported,
            "reporter": self.reporter,
            "reported_banned": self.reported_banned,
            "ad_id": self.ad_id,
            "ad_title": self.ad_title,
            "content": self.content,
            "last_messages": [{"from": h, "kind": k, "text": t} for h, k, t in self.last_messages],
        }


@dataclass(frozen=True)
class BoardStats:
    since: datetime
    ads_posted: int
    ads_open: int
    invites_sent: int
    invites_accepted: int
    invites_declined: int
    chats_active: int
    reports_open: int
    reports_new: int
    per_day: list[dict[str, object]]

    @property
    def accept_rate(self) -> float | None:
        decided = self.invites_accepted + self.invites_declined
        return None if decided == 0 else self.invites_accepted / decided

    def to_json(self) -> dict[str, object]:
        return {
            "since": self.since.isoformat(),
            "ads_posted": self.ads_posted,
            "ads_open": self.ads_open,
            "invites_sent": self.invites_sent,
            "invites_accepted": self.invites_accepted,
            "invites_declined": self.invites_declined,
            "accept_rate": None if self.accept_rate is None else round(self.accept_rate, 3),
            "chats_active": self.chats_active,
            "reports_open": self.reports_open,
            "reports_new": self.reports_new,
            "per_day": self.per_day,
        }


def _clean(text: object, limit: int, code: str) -> str:
    if not isinstance(text, str):
        raise invalid(f"{code}_empty")
    value = text.strip()
    if not value:
        raise invalid(f"{code}_empty")
    if len(value) > limit:
        raise invalid(f"{code}_too_long", limit=limit)
    return value


class BoardService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        limits: BoardLimits,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.limits = limits
        self.clock = clock
        self._tg_id = lru_cache(maxsize=65536)(self._decrypt_tg_id)
        self._expired_at: datetime | None = None

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # ---- users -------------------------------------------------------------------------------------------

    def _lookup(self, tg_id: int) -> str:
        return self.box.lookup(f"board-user:{tg_id}")

    def _find(self, session: Session, tg_id: int) -> BoardUser | None:
        """The user by the keyed hash of their Telegram id under any key (SECRET_KEY rotation), re-hashed under
        the current one when found by an older."""
        lookups = self.box.lookups(f"board-user:{tg_id}")
        row = session.scalar(select(BoardUser).where(BoardUser.tg_lookup.in_(lookups)).limit(1))
        if row is not None and row.tg_lookup != lookups[0]:
            row.tg_lookup = lookups[0]
            row.tg_enc = self.box.encrypt(str(tg_id))
        return row

    def _decrypt_tg_id(self, token: str) -> int:
        return int(self.box.decrypt(token))

    def _delivery(self, user: BoardUser) -> Delivery:
        return Delivery(self._tg_id(user.tg_enc), user.lang)

    def user(self, tg_id: int, lang: str | None = None) -> UserRef:
        """The board user Telegram knows as `tg_id` (created on first sight); `lang` updates their language."""
        lang = "en" if (lang or "").lower().startswith("en") else ("ru" if lang is not None else None)
        lookup = self._lookup(tg_id)
        with self._tx() as session:
            row = self._find(session, tg_id)
            if row is None:
                row = BoardUser(
                    public_id=new_public_id(),
                    tg_lookup=lookup,
                    tg_enc=self.box.encrypt(str(tg_id)),
                    lang=lang or "ru",
                    created_at=self.clock(),
                )
                try:
                    with session.begin_nested():
                        session.add(row)
                except IntegrityError:  # created by a concurrent first update
                    row = session.scalar(select(BoardUser).where(BoardUser.tg_lookup == lookup))
                    assert row is not None
            elif lang is not None and row.lang != lang:
                row.lang = lang
            return UserRef(row.id, row.public_id, row.lang, row.banned_at is not None)

    def find_user(self, tg_id: int) -> UserRef | None:
        with self._tx() as session:
            row = self._find(session, tg_id)
            return None if row is None else UserRef(row.id, row.public_id, row.lang, row.banned_at is not None)

    def _active_user(self, session: Session, ref: UserRef) -> BoardUser:
        row = session.get(BoardUser, ref.id)
        if row is None:
            raise forbidden("unknown_user")
        if row.banned_at is not None:
            raise forbidden("banned")
        return row

    # ---- ads ---------------------------------------------------------------------------------------------

    def _visible_ads(self, now: datetime) -> object:
        return and_(BoardAd.status == AdStatus.OPEN.value, BoardAd.expires_at > now)

    def expire_ads(self) -> int:
        """Mark open ads past their time as expired (so listing filters on the status alone, from its index)."""
        now = self.clock()
        with self._tx() as session:
            result = session.execute(
                update(BoardAd)
                .where(BoardAd.status == AdStatus.OPEN.value, BoardAd.expires_at <= now)
                .values(status=AdStatus.EXPIRED.value)
            )
        self._expired_at = now
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def list_ads(self, viewer: UserRef | None, q: str = "", category: str | None = None, page: int = 0) -> AdsPage:
        if category is not None and category not in CATEGORIES:
            raise invalid("bad_category")
        if len(q) > TITLE_MAX:
            raise invalid("query_too_long", limit=TITLE_MAX)
        page = max(0, min(int(page), 10_000))
        now = self.clock()
        if self._expired_at is None or now - self._expired_at > EXPIRY_SWEEP:
            self.expire_ads()  # the board process also sweeps every minute; this keeps any other caller right
        # Open by status: an ad that expired since the last sweep (under a minute ago) is dropped below.
        conditions = [BoardAd.status == AdStatus.OPEN.value]
        if category:
            conditions.append(BoardAd.category == category)
        term = q.strip().casefold()
        if term:
            escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(BoardAd.search_text.like(f"%{escaped}%", escape="\\"))
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(BoardAd).where(*conditions)) or 0
            rows = session.scalars(
                select(BoardAd)
                .where(*conditions)
                .order_by(BoardAd.created_at.desc(), BoardAd.id.desc())
                .offset(page * PER_PAGE)
                .limit(PER_PAGE)
            ).all()
            rows = [r for r in rows if r.expires_at > now]
            invited = self._invited(session, viewer, [r.id for r in rows])
            views = [self._ad_view(r, viewer, r.id in invited) for r in rows]
        return AdsPage(views, page, max(1, -(-total // PER_PAGE)), total)

    def _invited(self, session: Session, viewer: UserRef | None, ad_ids: list[int]) -> set[int]:
        if viewer is None or not ad_ids:
            return set()
        return set(
            session.scalars(
                select(BoardInvite.ad_id).where(BoardInvite.sender_id == viewer.id, BoardInvite.ad_id.in_(ad_ids))
            )
        )

    def _ad_view(self, ad: BoardAd, viewer: UserRef | None, invited: bool) -> AdView:
        status = ad.status
        if status == AdStatus.OPEN.value and ad.expires_at <= self.clock():
            status = "expired"
        return AdView(
            ad.public_id,
            ad.title,
            ad.text,
            ad.category,
            status,
            ad.created_at,
            ad.expires_at,
            viewer is not None and ad.author_id == viewer.id,
            invited,
        )

    def _recent_texts(self, session: Session, user_id: int) -> list[str]:
        since = self.clock() - timedelta(days=1)
        ads = session.scalars(
            select(BoardAd.text)
            .where(BoardAd.author_id == user_id, BoardAd.created_at > since)
            .order_by(BoardAd.id.desc())
            .limit(RECENT_TEXTS)
        ).all()
        invites = session.scalars(
            select(BoardInvite.message)
            .where(BoardInvite.sender_id == user_id, BoardInvite.created_at > since)
            .order_by(BoardInvite.id.desc())
            .limit(RECENT_TEXTS)
        ).all()
        return [*ads, *invites]

    def _check_spam(self, session: Session, user_id: int, *texts: str) -> None:
        recent = self._recent_texts(session, user_id)
        for text in texts:
            reason = spam_reason(text, self.limits.stop_words, recent)
            if reason is not None:
                raise invalid(f"spam_{reason}")

    def create_ad(self, author: UserRef, title: object, text: object, category: object) -> AdView:
        title_text = _clean(title, TITLE_MAX, "title")
        body = _clean(text, AD_TEXT_MAX, "text")
        if category not in CATEGORIES:
            raise invalid("bad_category")
        now = self.clock()
        with self._tx() as session:
            user = self._active_user(session, author)
            open_ads = session.scalar(
                select(func.count()).select_from(BoardAd).where(BoardAd.author_id == user.id, self._visible_ads(now))  # type: ignore[arg-type]
            )
            if (open_ads or 0) >= self.limits.ads_per_user:
                raise too_many("ad_limit", limit=self.limits.ads_per_user)
            self._check_spam(session, user.id, f"{title_text}\n{body}")
            ad = BoardAd(
                public_id=new_public_id(),
                author_id=user.id,
                title=title_text,
                text=body,
                category=str(category),
                search_text=f"{title_text}\n{body}".casefold(),
                status=AdStatus.OPEN.value,
                created_at=now,
                expires_at=now + timedelta(days=self.limits.ad_days),
            )
            session.add(ad)
            session.flush()
            return self._ad_view(ad, author, False)

    def _ad(self, session: Session, public_id: object) -> BoardAd:
        if not isinstance(public_id, str) or len(public_id) > 24:
            raise not_found("ad")
        ad = session.scalar(select(BoardAd).where(BoardAd.public_id == public_id))
        if ad is None:
            raise not_found("ad")
        return ad

    def get_ad(self, viewer: UserRef | None, public_id: str) -> AdView:
        with self.sessions() as session:
            ad = self._ad(session, public_id)
            mine = viewer is not None and ad.author_id == viewer.id
            if ad.status == AdStatus.HIDDEN.value and not mine:
                raise not_found("ad")
            return self._ad_view(ad, viewer, ad.id in self._invited(session, viewer, [ad.id]))

    def my_ads(self, viewer: UserRef) -> list[AdView]:
        with self.sessions() as session:
            rows = session.scalars(
                select(BoardAd).where(BoardAd.author_id == viewer.id).order_by(BoardAd.created_at.desc()).limit(100)
            ).all()
            return [self._ad_view(r, viewer, False) for r in rows]

    def close_ad(self, viewer: UserRef, public_id: str) -> AdView:
        with self._tx() as session:
            ad = self._ad(session, public_id)
            if ad.author_id != viewer.id:
                raise forbidden("not_your_ad")
            if ad.status == AdStatus.OPEN.value:
                ad.status = AdStatus.CLOSED.value
                ad.closed_at = self.clock()
            return self._ad_view(ad, viewer, False)

    # ---- invitations -------------------------------------------------------------------------------------

    def send_invite(self, sender: UserRef, ad_public_id: object, message: object) -> InviteSent:
        """The one first message `sender` may write about an ad; refused with a reason otherwise."""
        text = _clean(message, MESSAGE_MAX, "message")
        now = self.clock()
        with self._tx() as session:
            user = self._active_user(session, sender)
            ad = self._ad(session, ad_public_id)
            if ad.author_id == user.id:
                raise forbidden("own_ad")
            if ad.status != AdStatus.OPEN.value or ad.expires_at <= now:
                raise conflict("ad_closed")
            if self._blocked_between(session, user.id, ad.author_id):
                raise forbidden("blocked")
            already = session.scalar(
                select(BoardInvite.id).where(BoardInvite.sender_id == user.id, BoardInvite.ad_id == ad.id)
            )
            if already is not None:
                raise conflict("already_invited")
            today = session.scalar(
                select(func.count())
                .select_from(BoardInvite)
                .where(BoardInvite.sender_id == user.id, BoardInvite.created_at > now - timedelta(days=1))
            )
            if (today or 0) >= self.limits.invites_per_day:
                raise too_many("invite_limit", limit=self.limits.invites_per_day)
            self._check_spam(session, user.id, text)
            invite = BoardInvite(
                public_id=new_public_id(), ad_id=ad.id, sender_id=user.id, message=text, created_at=now
            )
            try:
                with session.begin_nested():
                    session.add(invite)
            except IntegrityError:  # the same invitation, concurrently
                raise conflict("already_invited") from None
            author = session.get(BoardUser, ad.author_id)
            assert author is not None
            return InviteSent(invite.public_id, ad.title, text, self._delivery(author))

    def decide_invite(self, author: UserRef, invite_public_id: object, accept: bool) -> Decision:
        """Accept (opens a chat, both sides are told) or decline (the sender is told nothing)."""
        now = self.clock()
        with self._tx() as session:
            user = self._active_user(session, author)
            invite = self._invite(session, invite_public_id)
            ad = session.get(BoardAd, invite.ad_id)
            assert ad is not None
            if ad.author_id != user.id:
                raise not_found("invite")
            if invite.status != InviteStatus.PENDING.value:
                raise conflict("invite_decided")
            changed = session.execute(
                update(BoardInvite)
                .where(BoardInvite.id == invite.id, BoardInvite.status == InviteStatus.PENDING.value)
                .values(
                    status=(InviteStatus.ACCEPTED if accept else InviteStatus.DECLINED).value,
                    decided_at=now,
                )
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise conflict("invite_decided")
            if not accept:
                return Decision(False, ad_title=ad.title)
            guest = session.get(BoardUser, invite.sender_id)
            assert guest is not None
            if guest.banned_at is not None or self._blocked_between(session, user.id, guest.id):
                raise forbidden("blocked")
            author_alias = new_alias()
            guest_alias = new_alias()
            while guest_alias == author_alias:
                guest_alias = new_alias()
            chat = BoardChat(
                public_id=new_public_id(),
                invite_id=invite.id,
                ad_id=ad.id,
                author_id=user.id,
                guest_id=guest.id,
                author_alias=author_alias,
                guest_alias=guest_alias,
                created_at=now,
            )
            session.add(chat)
            session.flush()
            return Decision(True, chat.public_id, ad.title, author_alias, guest_alias, self._delivery(guest))

    def _invite(self, session: Session, public_id: object) -> BoardInvite:
        if not isinstance(public_id, str) or len(public_id) > 24:
            raise not_found("invite")
        invite = session.scalar(select(BoardInvite).where(BoardInvite.public_id == public_id))
        if invite is None:
            raise not_found("invite")
        return invite

    # ---- chats -------------------------------------------------------------------------------------------

    def _blocked_between(self, session: Session, a: int, b: int) -> bool:
        return (
            session.scalar(
                select(BoardBlock.id).where(
                    or_(
                        and_(BoardBlock.blocker_id == a, BoardBlock.blocked_id == b),
                        and_(BoardBlock.blocker_id == b, BoardBlock.blocked_id == a),
                    )
                )
            )
            is not None
        )

    def _side(self, session: Session, chat: BoardChat, user_id: int) -> ChatSide:
        ad = session.get(BoardAd, chat.ad_id)
        if user_id == chat.author_id:
            partner_id, alias = chat.guest_id, chat.author_alias
        else:
            partner_id, alias = chat.author_id, chat.guest_alias
        partner = session.get(BoardUser, partner_id)
        assert partner is not None and ad is not None
        return ChatSide(chat.public_id, alias, ad.title, self._delivery(partner), partner_id)

    def active_chats(self, user: UserRef) -> list[ChatSide]:
        with self.sessions() as session:
            chats = session.scalars(
                select(BoardChat)
                .where(
                    BoardChat.status == ChatStatus.ACTIVE.value,
                    or_(BoardChat.author_id == user.id, BoardChat.guest_id == user.id),
                )
                .order_by(func.coalesce(BoardChat.last_message_at, BoardChat.created_at).desc())
            ).all()
            return [self._side(session, chat, user.id) for chat in chats]

    def _member_chat(self, session: Session, user_id: int, chat_public_id: object) -> BoardChat:
        if not isinstance(chat_public_id, str) or len(chat_public_id) > 24:
            raise not_found("chat")
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == chat_public_id))
        if chat is None or user_id not in (chat.author_id, chat.guest_id):
            raise not_found("chat")
        return chat

    def chat_side(self, user: UserRef, chat_public_id: str) -> ChatSide:
        """The user's side of an active chat (to relay a message into it); refused when it has ended."""
        with self.sessions() as session:
            if session.scalar(select(BoardUser.banned_at).where(BoardUser.id == user.id)) is not None:
                raise forbidden("banned")
            chat = self._member_chat(session, user.id, chat_public_id)
            if chat.status != ChatStatus.ACTIVE.value:
                raise conflict("chat_ended")
            return self._side(session, chat, user.id)

    def chat_of_reply(self, user: UserRef, replied_message_id: int) -> str | None:
        """The chat a message the user replies to belongs to (one they sent or received through the bot)."""
        with self.sessions() as session:
            row = session.execute(
                select(BoardMessage.chat_id)
                .join(BoardChat, BoardChat.id == BoardMessage.chat_id)
                .where(
                    or_(BoardChat.author_id == user.id, BoardChat.guest_id == user.id),
                    or_(
                        and_(BoardMessage.sender_id == user.id, BoardMessage.src_message_id == replied_message_id),
                        and_(BoardMessage.sender_id != user.id, BoardMessage.dst_message_id == replied_message_id),
                    ),
                )
                .order_by(BoardMessage.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            return session.scalar(select(BoardChat.public_id).where(BoardChat.id == row[0]))

    def counterpart(self, user: UserRef, chat_public_id: str, message_id: int) -> int | None:
        """The id, on the partner's side, of the message the user sees as `message_id` (for replies)."""
        with self.sessions() as session:
            chat = self._member_chat(session, user.id, chat_public_id)
            sent = session.scalar(
                select(BoardMessage.dst_message_id).where(
                    BoardMessage.chat_id == chat.id,
                    BoardMessage.sender_id == user.id,
                    BoardMessage.src_message_id == message_id,
                )
            )
            if sent is not None:
                return sent
            return session.scalar(
                select(BoardMessage.src_message_id).where(
                    BoardMessage.chat_id == chat.id,
                    BoardMessage.sender_id != user.id,
                    BoardMessage.dst_message_id == message_id,
                )
            )

    def relayed_copies(self, user: UserRef, src_message_id: int) -> list[tuple[ChatSide, int, str]]:
        """Where a message the user sent was copied to (for an edit): (chat side, partner's message id, kind)."""
        with self.sessions() as session:
            rows = session.execute(
                select(BoardMessage, BoardChat)
                .join(BoardChat, BoardChat.id == BoardMessage.chat_id)
                .where(BoardMessage.sender_id == user.id, BoardMessage.src_message_id == src_message_id)
            ).all()
            return [
                (self._side(session, chat, user.id), message.dst_message_id, message.kind)
                for message, chat in rows
                if chat.status == ChatStatus.ACTIVE.value
            ]

    def record_relay(
        self, user: UserRef, chat_public_id: str, pairs: list[tuple[int, int]], kind: str, text: str = ""
    ) -> None:
        """Remember that the user's messages `src` were delivered as `dst` (and what they said, for moderation)."""
        now = self.clock()
        with self._tx() as session:
            chat = self._member_chat(session, user.id, chat_public_id)
            session.add_all(
                BoardMessage(
                    chat_id=chat.id,
                    sender_id=user.id,
                    src_message_id=src,
                    dst_message_id=dst,
                    kind=kind,
                    text=text[:MESSAGE_MAX] if index == 0 else "",
                    created_at=now,
                )
                for index, (src, dst) in enumerate(pairs)
            )
            chat.last_message_at = now

    def update_relayed_text(self, user: UserRef, src_message_id: int, text: str) -> None:
        with self._tx() as session:
            session.execute(
                update(BoardMessage)
                .where(BoardMessage.sender_id == user.id, BoardMessage.src_message_id == src_message_id)
                .values(text=text[:MESSAGE_MAX])
            )

    def end_chat(self, user: UserRef, chat_public_id: str, reason: str = "ended") -> EndedChat:
        with self._tx() as session:
            chat = self._member_chat(session, user.id, chat_public_id)
            if chat.status != ChatStatus.ACTIVE.value:
                raise conflict("chat_ended")
            return self._end(session, chat, user.id, reason)

    def _end(self, session: Session, chat: BoardChat, user_id: int, reason: str) -> EndedChat:
        chat.status = ChatStatus.ENDED.value
        chat.ended_reason = reason
        chat.ended_at = self.clock()
        side = self._side(session, chat, user_id)
        partner_alias = chat.guest_alias if user_id == chat.author_id else chat.author_alias
        return EndedChat(side.chat_id, side.alias, side.ad_title, side.partner, partner_alias)

    def block(self, user: UserRef, chat_public_id: str) -> EndedChat:
        """End the chat; the partner can never invite or reach this user again."""
        with self._tx() as session:
            chat = self._member_chat(session, user.id, chat_public_id)
            partner_id = chat.guest_id if user.id == chat.author_id else chat.author_id
            exists = session.scalar(
                select(BoardBlock.id).where(BoardBlock.blocker_id == user.id, BoardBlock.blocked_id == partner_id)
            )
            if exists is None:
                session.add(BoardBlock(blocker_id=user.id, blocked_id=partner_id, created_at=self.clock()))
            ended = self._end(session, chat, user.id, "blocked")
            # Every other chat between the two ends too.
            for other in session.scalars(
                select(BoardChat).where(
                    BoardChat.status == ChatStatus.ACTIVE.value,
                    or_(
                        and_(BoardChat.author_id == user.id, BoardChat.guest_id == partner_id),
                        and_(BoardChat.author_id == partner_id, BoardChat.guest_id == user.id),
                    ),
                )
            ):
                self._end(session, other, user.id, "blocked")
            return ended

    def end_unreachable(self, chat_public_id: str, unreachable_user_id: int) -> EndedChat | None:
        """The partner `unreachable_user_id` blocked the bot or is gone: end the chat.

        Returns the chat as the reachable side sees it (its `partner` is the unreachable one, `alias` what the
        reachable side called them), for the caller to tell the reachable side; None if it had ended already.
        """
        with self._tx() as session:
            chat = session.scalar(select(BoardChat).where(BoardChat.public_id == chat_public_id))
            if chat is None or chat.status != ChatStatus.ACTIVE.value:
                return None
            other = chat.author_id if unreachable_user_id == chat.guest_id else chat.guest_id
            return self._end(session, chat, other, "unreachable")

    # ---- reports and moderation --------------------------------------------------------------------------

    def report(self, reporter: UserRef, target: ReportTarget, public_id: object, reason: object) -> str:
        """File a report on an ad, an invitation one received, or a chat one is in; returns its id."""
        text = reason.strip()[:REASON_MAX] if isinstance(reason, str) else ""
        if isinstance(reason, str) and len(reason.strip()) > REASON_MAX:
            raise invalid("reason_too_long", limit=REASON_MAX)
        with self._tx() as session:
            user = self._active_user(session, reporter)
            row = BoardReport(
                public_id=new_public_id(),
                reporter_id=user.id,
                target=target.value,
                reason=text,
                created_at=self.clock(),
            )
            if target is ReportTarget.AD:
                ad = self._ad(session, public_id)
                if ad.author_id == user.id:
                    raise forbidden("own_ad")
                row.ad_id, row.reported_id = ad.id, ad.author_id
                if self._already_reported(session, user.id, BoardReport.ad_id == ad.id):
                    raise conflict("already_reported")
                ad.report_count += 1
                if ad.report_count >= self.limits.hide_after_reports and ad.status == AdStatus.OPEN.value:
                    ad.status = AdStatus.HIDDEN.value
            elif target is ReportTarget.INVITE:
                invite = self._invite(session, public_id)
                ad = session.get(BoardAd, invite.ad_id)
                if ad is None or ad.author_id != user.id:
                    raise not_found("invite")
                if self._already_reported(session, user.id, BoardReport.invite_id == invite.id):
                    raise conflict("already_reported")
                row.invite_id, row.ad_id, row.reported_id = invite.id, ad.id, invite.sender_id
                if invite.status == InviteStatus.PENDING.value:
                    invite.status = InviteStatus.DECLINED.value
                    invite.decided_at = self.clock()
            else:
                chat = self._member_chat(session, user.id, public_id)
                if self._already_reported(session, user.id, BoardReport.chat_id == chat.id):
                    raise conflict("already_reported")
                row.chat_id, row.ad_id = chat.id, chat.ad_id
                row.reported_id = chat.guest_id if user.id == chat.author_id else chat.author_id
            session.add(row)
            session.flush()
            return row.public_id

    def _already_reported(self, session: Session, reporter_id: int, condition: object) -> bool:
        return (
            session.scalar(
                select(BoardReport.id).where(BoardReport.reporter_id == reporter_id, condition)  # type: ignore[arg-type]
            )
            is not None
        )

    def report_queue(self, limit: int = 20, status: ReportStatus = ReportStatus.OPEN) -> list[ReportView]:
        with self.sessions() as session:
            rows = session.scalars(
                select(BoardReport)
                .where(BoardReport.status == status.value)
                .order_by(BoardReport.created_at.asc())
                .limit(max(1, min(limit, 500)))
            ).all()
            return [self._report_view(session, row) for row in rows]

    def get_report(self, public_id: str) -> ReportView:
        with self.sessions() as session:
            return self._report_view(session, self._report(session, public_id))

    def _report(self, session: Session, public_id: object) -> BoardReport:
        if not isinstance(public_id, str) or len(public_id) > 24:
            raise not_found("report")
        row = session.scalar(select(BoardReport).where(BoardReport.public_id == public_id))
        if row is None:
            raise not_found("report")
        return row

    def _report_view(self, session: Session, row: BoardReport) -> ReportView:
        handles = dict(session.execute(select(BoardUser.id, BoardUser.public_id).where(
            BoardUser.id.in_([row.reported_id, row.reporter_id])
        )).all())  # fmt: skip
        reported = session.get(BoardUser, row.reported_id)
        ad = session.get(BoardAd, row.ad_id) if row.ad_id else None
        content = ""
        if row.target == ReportTarget.AD.value and ad is not None:
            content = ad.text
        elif row.invite_id:
            invite = session.get(BoardInvite, row.invite_id)
            content = invite.message if invite else ""
        last: list[tuple[str, str, str]] = []
        if row.chat_id:
            messages = session.execute(
                select(BoardMessage.sender_id, BoardMessage.kind, BoardMessage.text)
                .where(BoardMessage.chat_id == row.chat_id, BoardMessage.created_at <= row.created_at)
                .order_by(BoardMessage.id.desc())
                .limit(20)
            ).all()
            senders = dict(session.execute(select(BoardUser.id, BoardUser.public_id).where(
                BoardUser.id.in_({m[0] for m in messages})
            )).all())  # fmt: skip
            last = [(senders.get(s, "?"), k, t) for s, k, t in reversed(messages)]
        return ReportView(
            row.public_id,
            row.target,
            row.reason,
            row.created_at,
            row.status,
            handles.get(row.reported_id, "?"),
            handles.get(row.reporter_id, "?"),
            reported is not None and reported.banned_at is not None,
            ad.public_id if ad else None,
            ad.title if ad else "",
            content,
            last,
        )

    def _open_report(self, session: Session, public_id: str) -> BoardReport:
        """The report to act on; one settled already (by another moderator, say) is refused, not undone."""
        row = self._report(session, public_id)
        if row.status != ReportStatus.OPEN.value:
            raise conflict("report_closed")
        return row

    def _resolve(self, session: Session, row: BoardReport, status: ReportStatus, actor: str) -> None:
        row.status = status.value
        row.resolved_at = self.clock()
        row.resolved_by = actor[:64]

    def ban(self, report_public_id: str, actor: str, reason: str = "") -> ReportView:
        """Ban the reported user: no posting, inviting, chatting or reporting; their ads hide, chats end."""
        with self._tx() as session:
            row = self._open_report(session, report_public_id)
            user = session.get(BoardUser, row.reported_id)
            assert user is not None
            if user.banned_at is None:
                user.banned_at = self.clock()
                user.ban_reason = (reason or row.reason)[:REASON_MAX]
            session.execute(
                update(BoardAd)
                .where(BoardAd.author_id == user.id, BoardAd.status == AdStatus.OPEN.value)
                .values(status=AdStatus.HIDDEN.value)
            )
            session.execute(
                update(BoardChat)
                .where(
                    BoardChat.status == ChatStatus.ACTIVE.value,
                    or_(BoardChat.author_id == user.id, BoardChat.guest_id == user.id),
                )
                .values(status=ChatStatus.ENDED.value, ended_reason="banned", ended_at=self.clock())
            )
            # Every open report against them is settled by the ban.
            for other in session.scalars(
                select(BoardReport).where(
                    BoardReport.reported_id == user.id, BoardReport.status == ReportStatus.OPEN.value
                )
            ):
                self._resolve(session, other, ReportStatus.ACTIONED, actor)
            session.flush()
            return self._report_view(session, row)

    def dismiss(self, report_public_id: str, actor: str) -> ReportView:
        """Nothing wrong: close the report; an ad hidden only by reports comes back."""
        with self._tx() as session:
            row = self._open_report(session, report_public_id)
            self._resolve(session, row, ReportStatus.DISMISSED, actor)
            if row.target == ReportTarget.AD.value and row.ad_id:
                ad = session.get(BoardAd, row.ad_id)
                pending = session.scalar(
                    select(func.count())
                    .select_from(BoardReport)
                    .where(BoardReport.ad_id == row.ad_id, BoardReport.status == ReportStatus.OPEN.value)
                )
                author = session.get(BoardUser, ad.author_id) if ad else None
                if (
                    ad is not None
                    and ad.status == AdStatus.HIDDEN.value
                    and not pending
                    and author is not None
                    and author.banned_at is None
                ):
                    ad.status = AdStatus.OPEN.value
                    ad.report_count = 0
            session.flush()
            return self._report_view(session, row)

    def hide_ad(self, report_public_id: str, actor: str) -> ReportView:
        with self._tx() as session:
            row = self._open_report(session, report_public_id)
            if not row.ad_id:
                raise invalid("no_ad")
            ad = session.get(BoardAd, row.ad_id)
            if ad is not None:
                ad.status = AdStatus.HIDDEN.value
            for other in session.scalars(
                select(BoardReport).where(
                    BoardReport.ad_id == row.ad_id,
                    BoardReport.target == ReportTarget.AD.value,
                    BoardReport.status == ReportStatus.OPEN.value,
                )
            ):
                self._resolve(session, other, ReportStatus.ACTIONED, actor)
            self._resolve(session, row, ReportStatus.ACTIONED, actor)
            session.flush()
            return self._report_view(session, row)

    # ---- statistics and housekeeping ---------------------------------------------------------------------

    def stats(self, days: int = 1) -> BoardStats:
        now = self.clock()
        since = now - timedelta(days=max(1, days))
        with self.sessions() as session:

            def count(model: type, *conditions: object) -> int:
                return session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0  # type: ignore[arg-type]

            per_day = []
            for offset in range(max(1, days) - 1, -1, -1):
                end = now - timedelta(days=offset)
                start = end - timedelta(days=1)
                per_day.append(
                    {
                        "day": end.date().isoformat(),
                        "ads": count(BoardAd, BoardAd.created_at > start, BoardAd.created_at <= end),
                        "invites": count(BoardInvite, BoardInvite.created_at > start, BoardInvite.created_at <= end),
                        "accepted": count(
                            BoardInvite,
                            BoardInvite.status == InviteStatus.ACCEPTED.value,
                            BoardInvite.decided_at > start,
                            BoardInvite.decided_at <= end,
                        ),
                        "declined": count(
                            BoardInvite,
                            BoardInvite.status == InviteStatus.DECLINED.value,
                            BoardInvite.decided_at > start,
                            BoardInvite.decided_at <= end,
                        ),
                    }
                )
            return BoardStats(
                since=since,
                ads_posted=count(BoardAd, BoardAd.created_at > since),
                ads_open=count(BoardAd, self._visible_ads(now)),
                invites_sent=count(BoardInvite, BoardInvite.created_at > since),
                invites_accepted=count(
                    BoardInvite, BoardInvite.status == InviteStatus.ACCEPTED.value, BoardInvite.decided_at > since
                ),
                invites_declined=count(
                    BoardInvite, BoardInvite.status == InviteStatus.DECLINED.value, BoardInvite.decided_at > since
                ),
                chats_active=count(BoardChat, BoardChat.status == ChatStatus.ACTIVE.value),
                reports_open=count(BoardReport, BoardReport.status == ReportStatus.OPEN.value),
                reports_new=count(BoardReport, BoardReport.created_at > since),
                per_day=per_day,
            )

    def prune_history(self, batch: int = 5000) -> int:
        """Forget relayed messages' text older than BOARD_HISTORY_DAYS (the id pairs of active chats stay)."""
        cutoff = self.clock() - timedelta(days=self.limits.history_days)
        removed = 0
        while True:
            with self._tx() as session:
                old = select(BoardMessage.id).where(BoardMessage.created_at < cutoff).limit(batch)
                ids = session.scalars(old).all()
                if not ids:
                    return removed
                session.execute(delete(BoardMessage).where(BoardMessage.id.in_(ids)))
                removed += len(ids)


__all__ = ["BoardError", "BoardService", "UserRef"]
