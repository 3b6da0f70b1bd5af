"""First messages: one per person and ad, BOARD_INVITES_PER_DAY a day however requests interleave; accepting one
opens an anonymous chat.

A block reveals nothing: a first message between two people one of whom blocked the other is answered
exactly as any first message is, counts as any does, and simply never reaches the other (it is kept as
`swallowed`). An invitation from before a block, accepted afterwards, opens a chat the other side never sees
(`silent_user_id`): the one who accepted meets a partner who does not answer, as with anyone who does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from board.errors import conflict, forbidden, not_found, too_many
from board.services.ads import AdsService
from board.services.base import PUBLIC_ID_MAX, clean_field, new_alias, new_public_id
from board.services.outbox import OutboxKind, OutboxService, partner
from board.views import Decision, UserRef
from database.board_models import (
    INVITE_MAX,
    AdStatus,
    BoardAd,
    BoardBlock,
    BoardChat,
    BoardInvite,
    BoardUser,
    InviteStatus,
)


@dataclass(frozen=True)
class InviteSent:
    invite_id: str
    ad_title: str


class InvitesService(AdsService, OutboxService):
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

    def send_invite(self, sender: UserRef, ad_public_id: object, message: object) -> InviteSent:
        """The one first message `sender` may write about an ad; refused with a reason otherwise. Queued for the
        ad's author in the same transaction (unless a block stands between them: then it goes nowhere)."""
        body = clean_field(message, INVITE_MAX, "message")
        now = self.clock()
        with self._tx() as session:
            user = self._lock_user(session, sender.id)
            ad = self._visible_ad(session, sender, ad_public_id)
            if ad.author_id == user.id:
                raise forbidden("own_ad")
            if ad.status != AdStatus.OPEN.value or ad.expires_at <= now:
                raise conflict("ad_closed")
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
            self._check_spam(session, user.id, body, field="message")
            blocked = self._blocked_between(session, user.id, ad.author_id)
            invite = BoardInvite(
                public_id=new_public_id(),
                ad_id=ad.id,
                sender_id=user.id,
                message=body,
                status=(InviteStatus.SWALLOWED if blocked else InviteStatus.PENDING).value,
                created_at=now,
            )
            try:
                with session.begin_nested():
                    session.add(invite)
            except IntegrityError:  # the same invitation, concurrently
                raise conflict("already_invited") from None
            if not blocked:
                card = {"invite": invite.public_id}
                self._enqueue(session, ad.author_id, OutboxKind.INVITE, card, f"invite:{invite.public_id}")
            return InviteSent(invite.public_id, ad.title)

    def _invite(self, session: Session, public_id: object) -> BoardInvite:
        if not isinstance(public_id, str) or len(public_id) > PUBLIC_ID_MAX:
            raise not_found("invite")
        invite = session.scalar(select(BoardInvite).where(BoardInvite.public_id == public_id))
        if invite is None:
            raise not_found("invite")
        return invite

    def decide_invite(self, author: UserRef, invite_public_id: object, accept: bool) -> Decision:
        """Accept (opens a chat; the sender is told) or decline (the sender is told nothing)."""
        now = self.clock()
        with self._tx() as session:
            user = self._active_user(session, author)
            invite = self._invite(session, invite_public_id)
            ad = session.get(BoardAd, invite.ad_id)
            if ad is None or ad.author_id != user.id or invite.status == InviteStatus.SWALLOWED.value:
                raise not_found("invite")
            if invite.status == InviteStatus.WITHDRAWN.value:
                raise conflict("invite_withdrawn")
            changed = session.execute(
                update(BoardInvite)
                .where(BoardInvite.id == invite.id, BoardInvite.status == InviteStatus.PENDING.value)
                .values(status=(InviteStatus.ACCEPTED if accept else InviteStatus.DECLINED).value, decided_at=now)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise conflict("invite_decided")
            if not accept:
                return Decision(False, ad_title=ad.title)
            guest = session.get(BoardUser, invite.sender_id)
            assert guest is not None
            silent = self._blocked_between(session, user.id, guest.id)
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
                silent_user_id=guest.id if silent else None,
                created_at=now,
            )
            session.add(chat)
            session.flush()
            if not silent:
                values = {"title": ad.title, "partner": partner(guest_alias, ad.title)}
                self._notice(session, guest.id, "invite.accepted_guest", values, chat=chat.public_id)
            return Decision(True, chat.public_id, ad.title, author_alias)
