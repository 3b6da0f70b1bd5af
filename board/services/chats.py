"""Anonymous chats: which chat a message goes to (queued for the partner in the same transaction), the id
pairs of relayed copies (so replies and edits land), ending, blocking, and what happens when Telegram refuses
a relay for good.

A chat may be silent for one side (`silent_user_id`): that side left it through a block without the other
being told; it no longer sees the chat and nothing written there reaches it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from board.errors import conflict, not_found
from board.services.base import PUBLIC_ID_MAX
from board.services.invites import InvitesService
from board.services.outbox import OutboxItem, OutboxKind, Refusal, partner
from board.views import ChatSide, EndedChat, RelayMessage, RelayRoute, UserRef
from database.board_models import (
    MESSAGE_MAX,
    BoardAd,
    BoardBlock,
    BoardChat,
    BoardMessage,
    BoardOutbox,
    ChatStatus,
    OutboxState,
)


def _visible_to(user_id: int) -> Any:
    """Active chats `user_id` is in and has not left silently."""
    return and_(
        BoardChat.status == ChatStatus.ACTIVE.value,
        or_(BoardChat.author_id == user_id, BoardChat.guest_id == user_id),
        or_(BoardChat.silent_user_id.is_(None), BoardChat.silent_user_id != user_id),
    )


class ChatsService(InvitesService):
    def _side(self, session: Session, chat: BoardChat, user_id: int) -> ChatSide:
        title = session.scalar(select(BoardAd.title).where(BoardAd.id == chat.ad_id)) or ""
        if user_id == chat.author_id:
            return ChatSide(chat.public_id, chat.author_alias, title, chat.guest_id)
        return ChatSide(chat.public_id, chat.guest_alias, title, chat.author_id)

    def _partner_alias(self, chat: BoardChat, user_id: int) -> str:
        """What the partner calls `user_id`."""
        return chat.guest_alias if user_id == chat.author_id else chat.author_alias

    def _visible_chats(self, session: Session, user_id: int) -> list[BoardChat]:
        return list(
            session.scalars(
                select(BoardChat)
                .where(_visible_to(user_id))
                .order_by(func.coalesce(BoardChat.last_message_at, BoardChat.created_at).desc(), BoardChat.id.desc())
            )
        )

    def active_chats(self, user: UserRef) -> list[ChatSide]:
        with self.sessions() as session:
            return [self._side(session, chat, user.id) for chat in self._visible_chats(session, user.id)]

    def _member_chat(self, session: Session, user_id: int, chat_public_id: object) -> BoardChat:
        if not isinstance(chat_public_id, str) or len(chat_public_id) > PUBLIC_ID_MAX:
            raise not_found("chat")
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == chat_public_id))
        if chat is None or user_id not in (chat.author_id, chat.guest_id):
            raise not_found("chat")
        return chat

    def _open_chat(self, session: Session, user_id: int, chat_public_id: object) -> BoardChat:
        chat = self._member_chat(session, user_id, chat_public_id)
        if chat.status != ChatStatus.ACTIVE.value or chat.silent_user_id == user_id:
            raise conflict("chat_ended")
        return chat

    def chat_side(self, user: UserRef, chat_public_id: str) -> ChatSide:
        """The user's side of an active chat; refused when it has ended (or they are banned)."""
        with self.sessions() as session:
            self._active_user(session, user)
            return self._side(session, self._open_chat(session, user.id, chat_public_id), user.id)

    def _chat_of_reply(self, session: Session, user_id: int, replied_message_id: int) -> BoardChat | None:
        chat_id = session.scalar(
            select(BoardMessage.chat_id)
            .join(BoardChat, BoardChat.id == BoardMessage.chat_id)
            .where(
                or_(BoardChat.author_id == user_id, BoardChat.guest_id == user_id),
                or_(
                    and_(BoardMessage.sender_id == user_id, BoardMessage.src_message_id == replied_message_id),
                    and_(BoardMessage.sender_id != user_id, BoardMessage.dst_message_id == replied_message_id),
                ),
            )
            .order_by(BoardMessage.id.desc())
            .limit(1)
        )
        return None if chat_id is None else session.get(BoardChat, chat_id)

    def chat_of_reply(self, user: UserRef, replied_message_id: int) -> str | None:
        """The chat a message the user replies to belongs to (one they sent or received through the bot)."""
        with self.sessions() as session:
            chat = self._chat_of_reply(session, user.id, replied_message_id)
            return None if chat is None else chat.public_id

    def _counterpart_in(self, session: Session, chat: BoardChat, user_id: int, message_id: int) -> int | None:
        sent = session.scalar(
            select(BoardMessage.dst_message_id).where(
                BoardMessage.chat_id == chat.id,
                BoardMessage.sender_id == user_id,
                BoardMessage.src_message_id == message_id,
            )
        )
        if sent is not None:
            return sent
        return session.scalar(
            select(BoardMessage.src_message_id).where(
                BoardMessage.chat_id == chat.id,
                BoardMessage.sender_id != user_id,
                BoardMessage.dst_message_id == message_id,
            )
        )

    def counterpart(self, user: UserRef, chat_public_id: str, message_id: int) -> int | None:
        """The id, on the partner's side, of the message the user sees as `message_id` (for replies)."""
        with self.sessions() as session:
            return self._counterpart_in(
                session, self._member_chat(session, user.id, chat_public_id), user.id, message_id
            )

    # ---- relaying ---------------------------------------------------------------------------------------

    def enqueue_relay(self, user: UserRef, message: RelayMessage, chat_public_id: str | None = None) -> RelayRoute:
        """Decide which chat `message` goes to and queue its copy for the partner, in one transaction.

        With `chat_public_id` (picked from buttons), that chat; else the chat of the message replied to, or the
        only chat. A redelivered update is queued once. In a chat the partner left silently it goes nowhere.
        """
        now = self.clock()
        with self._tx() as session:
            self._active_user(session, user)
            if chat_public_id is not None:
                chat = self._open_chat(session, user.id, chat_public_id)
            else:
                chats = self._visible_chats(session, user.id)
                if not chats:
                    return RelayRoute("none")
                chosen = None
                if message.reply_to is not None:
                    replied = self._chat_of_reply(session, user.id, message.reply_to)
                    if replied is not None:
                        chosen = next((c for c in chats if c.id == replied.id), None)
                        if chosen is None:  # a message of a chat that has ended: never another one
                            return RelayRoute("ended")
                if chosen is None and len(chats) == 1:
                    chosen = chats[0]
                if chosen is None:
                    return RelayRoute("choose", chats=tuple(self._side(session, c, user.id) for c in chats))
                chat = chosen
            side = self._side(session, chat, user.id)
            first = message.message_ids[0]
            delivered = session.scalar(
                select(BoardMessage.id).where(
                    BoardMessage.chat_id == chat.id,
                    BoardMessage.sender_id == user.id,
                    BoardMessage.src_message_id == first,
                )
            )
            if delivered is None and chat.silent_user_id == side.partner_user_id:
                # Nobody on the other side: kept as if delivered (to no one, copy id 0), so that replies to it and
                # the chat's place among the sender's chats are what they are in any chat.
                pairs = [(src, 0) for src in message.message_ids]
                self._add_pairs(session, chat, user.id, pairs, message.kind, message.text)
            elif delivered is None:
                payload = {"chat": chat.public_id, "sender": user.id, "message": message.to_json()}
                self._enqueue(session, side.partner_user_id, OutboxKind.RELAY, payload, f"relay:{user.id}:{first}")
            chat.last_message_at = now
            return RelayRoute("queued", side)

    def enqueue_edit(self, user: UserRef, src_message_id: int, body: str, caption: bool, entities: list[Any]) -> int:
        """An edited message: queue edits of its copies (or, while its copy still waits in the outbox, let the
        copy carry the edit, as Telegram copies the message as it is then). Returns how many edits."""
        text = body[:MESSAGE_MAX]
        with self._tx() as session:
            rows = session.execute(
                select(BoardMessage, BoardChat)
                .join(BoardChat, BoardChat.id == BoardMessage.chat_id)
                .where(BoardMessage.sender_id == user.id, BoardMessage.src_message_id == src_message_id)
            ).all()
            queued = 0
            for stored, chat in rows:
                if stored.text or stored.kind == "text" or caption:
                    stored.text = text
                side = self._side(session, chat, user.id)
                if chat.status != ChatStatus.ACTIVE.value or chat.silent_user_id == side.partner_user_id:
                    continue
                field = "caption" if caption else "text"
                payload = {"chat": chat.public_id, "sender": user.id, "src": src_message_id, field: body,
                           "entities": entities}  # fmt: skip
                self._enqueue(session, side.partner_user_id, OutboxKind.EDIT, payload)
                queued += 1
            if not rows:
                waiting = session.scalar(
                    select(BoardOutbox).where(
                        BoardOutbox.dedup_key == f"relay:{user.id}:{src_message_id}",
                        BoardOutbox.state == OutboxState.PENDING.value,
                    )
                )
                if waiting is not None:
                    payload = json.loads(waiting.payload)
                    payload["message"]["t"] = text
                    waiting.payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            return queued

    def _record_relay_pairs(self, session: Session, item: OutboxItem, sent_ids: list[int]) -> None:
        message = RelayMessage.from_json(item.payload.get("message"))
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == item.payload.get("chat")))
        if message is None or chat is None:
            return
        self._add_pairs(session, chat, int(item.payload["sender"]), list(zip(message.message_ids, sent_ids,
                        strict=False)), message.kind, message.text)  # fmt: skip

    def _add_pairs(
        self, session: Session, chat: BoardChat, sender_id: int, pairs: list[tuple[int, int]], kind: str, text: str
    ) -> None:
        now = self.clock()
        session.add_all(
            BoardMessage(
                chat_id=chat.id,
                sender_id=sender_id,
                src_message_id=src,
                dst_message_id=dst,
                kind=kind,
                text=text[:MESSAGE_MAX] if index == 0 else "",
                created_at=now,
            )
            for index, (src, dst) in enumerate(pairs)
        )
        chat.last_message_at = now

    def record_relay(
        self, user: UserRef, chat_public_id: str, pairs: list[tuple[int, int]], kind: str, text: str = ""
    ) -> None:
        """Remember that the user's messages `src` were delivered as `dst` (and what they said, for moderation)."""
        with self._tx() as session:
            chat = self._member_chat(session, user.id, chat_public_id)
            self._add_pairs(session, chat, user.id, pairs, kind, text)

    def _relay_refused(self, session: Session, item: OutboxItem, refusal: str) -> None:
        """Telegram refused a relay for good: its sender hears why (a partner gone ends the chat)."""
        sender_id = int(item.payload["sender"])
        message = RelayMessage.from_json(item.payload.get("message"))
        first = message.message_ids[0] if message else None
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == item.payload.get("chat")))
        if chat is None:
            return
        side = self._side(session, chat, sender_id)
        label = partner(side.alias, side.ad_title)
        if refusal == Refusal.BLOCKED:
            if not self._unreachable(session, chat.public_id, side.partner_user_id):
                self._notice(session, sender_id, "relay.not_delivered", {"partner": label}, reply_to=first)
        elif refusal == Refusal.BAD_REQUEST:
            self._notice(session, sender_id, "relay.not_copied", {"partner": label}, reply_to=first)
        elif refusal == Refusal.CHAT_ENDED:
            self._notice(session, sender_id, "relay.not_delivered", {"partner": label}, reply_to=first)

    def _unreachable(self, session: Session, chat_public_id: str, gone_user_id: int) -> bool:
        """`gone_user_id` blocked the bot or left Telegram: their chat ends and the other side hears so. False if
        it had ended already."""
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == chat_public_id))
        if chat is None or chat.status != ChatStatus.ACTIVE.value:
            return False
        self._end(session, chat, "unreachable")
        other = chat.author_id if gone_user_id == chat.guest_id else chat.guest_id
        if chat.silent_user_id != other:
            side = self._side(session, chat, other)
            self._notice(session, other, "chat.partner_gone", {"partner": partner(side.alias, side.ad_title)})
        return True

    # ---- ending -----------------------------------------------------------------------------------------

    def _end(self, session: Session, chat: BoardChat, reason: str) -> None:
        chat.status = ChatStatus.ENDED.value
        chat.ended_reason = reason
        chat.ended_at = self.clock()

    def _tell_partner_ended(self, session: Session, chat: BoardChat, user_id: int) -> None:
        side = self._side(session, chat, user_id)
        if chat.silent_user_id == side.partner_user_id:
            return
        label = partner(self._partner_alias(chat, user_id), side.ad_title)
        self._notice(session, side.partner_user_id, "chat.ended_by_partner", {"partner": label})

    def end_chat(self, user: UserRef, chat_public_id: str) -> EndedChat:
        """End a chat; the partner is told (in their language)."""
        with self._tx() as session:
            chat = self._open_chat(session, user.id, chat_public_id)
            self._end(session, chat, "ended")
            self._tell_partner_ended(session, chat, user.id)
            side = self._side(session, chat, user.id)
            return EndedChat(chat.public_id, side.alias, side.ad_title)

    def block(self, user: UserRef, chat_public_id: str) -> EndedChat:
        """End the chat and never hear from the partner again. The partner is told only that this chat ended —
        exactly what ending it tells — and other chats between the two go silent for the blocker instead of
        ending, since ending them too would tell the partner they were with the same person."""
        with self._tx() as session:
            self._active_user(session, user)
            chat = self._open_chat(session, user.id, chat_public_id)
            side = self._side(session, chat, user.id)
            partner_id = side.partner_user_id
            exists = session.scalar(
                select(BoardBlock.id).where(BoardBlock.blocker_id == user.id, BoardBlock.blocked_id == partner_id)
            )
            if exists is None:
                session.add(BoardBlock(blocker_id=user.id, blocked_id=partner_id, created_at=self.clock()))
            self._end(session, chat, "blocked")
            self._tell_partner_ended(session, chat, user.id)
            session.execute(
                update(BoardChat)
                .where(
                    BoardChat.status == ChatStatus.ACTIVE.value,
                    BoardChat.silent_user_id.is_(None),
                    or_(
                        and_(BoardChat.author_id == user.id, BoardChat.guest_id == partner_id),
                        and_(BoardChat.author_id == partner_id, BoardChat.guest_id == user.id),
                    ),
                )
                .values(silent_user_id=user.id)
            )
            session.execute(  # chats the partner had already left silently: nobody on the other side
                update(BoardChat)
                .where(
                    BoardChat.status == ChatStatus.ACTIVE.value,
                    BoardChat.silent_user_id == partner_id,
                    or_(BoardChat.author_id == user.id, BoardChat.guest_id == user.id),
                )
                .values(status=ChatStatus.ENDED.value, ended_reason="blocked", ended_at=self.clock())
            )
            return EndedChat(chat.public_id, side.alias, side.ad_title)
