"""The outbox's durable side: every message the board's bot sends is a `board_outbox` row first, written in the
same transaction as whatever caused it (a relayed message, an invitation, a ban), by whichever process did it.

The board's bot (`board.bot.outbox`) paces and sends the rows; this module is what it asks of the database:
`pending_outbox` to load, `claim_outbox` to take a row (pending → sending) with what rendering it needs,
`outbox_sent` / `outbox_refused` / `release_outbox` for the outcome — each applying the outcome's effects (the
relayed copy's id pairs, a chat that ends, the sender told) in the same transaction — and
`outbox_interrupted` at start for rows a killed process left in `sending`: maybe delivered, so never sent
again (at most once); a relay's sender is told it may not have arrived.

Payloads are JSON and name people only by board user id: `recipient_id` is resolved to a Telegram id when
the row is sent. Notice texts are catalogue keys with values (`text(...)` nests another key), rendered in the
recipient's language at sending time.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from board.services.base import ServiceBase
from database.board_models import (
    BoardAd,
    BoardChat,
    BoardInvite,
    BoardMessage,
    BoardOutbox,
    BoardUser,
    ChatStatus,
    InviteStatus,
    OutboxState,
)

log = logging.getLogger(__name__)

KEEP_SETTLED = timedelta(days=1)  # settled rows with a key, so a redelivered update cannot queue them again


class OutboxKind(enum.StrEnum):
    NOTICE = "notice"  # a catalogue text: {"key", "values", "keyboard"?, "reply_to"?}
    INVITE = "invite"  # an invitation card with its answer buttons: {"invite"}
    RELAY = "relay"  # copy one message or an album into a chat: {"chat", "sender", "message": RelayMessage}
    EDIT = "edit"  # edit a relayed copy: {"chat", "sender", "src", "text" | "caption", "entities"}
    OWN_EDIT = "own_edit"  # edit (or strip the buttons of) a message the bot sent: {"message_id", "key"?, ...}


class Refusal(enum.StrEnum):
    """Why a row will never be sent."""

    BLOCKED = "blocked"  # 403: the recipient blocked the bot or is gone
    BAD_REQUEST = "bad_request"  # 400: Telegram cannot do it (the message cannot be copied, is gone, …)
    CHAT_ENDED = "chat_ended"  # a relay whose chat ended before its turn came
    UNRENDERABLE = "unrenderable"  # a row this version cannot read


def text(key: str, **values: object) -> dict[str, object]:
    """A catalogue text as a notice's value, rendered in the recipient's language."""
    return {"$t": key, **values}


def partner(alias: str, title: str) -> dict[str, object]:
    """How one side of a chat names the other: "Собеседник #K7 · <ad title>"."""
    return text("chat.partner", alias=alias, title=title)


@dataclass(frozen=True)
class OutboxItem:
    id: int
    recipient_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Prepared:
    """A claimed row and what sending it needs, read in the claim's transaction."""

    item: OutboxItem
    chat_id: int  # the recipient's Telegram id
    lang: str
    from_chat_id: int | None = None  # a relay: the sender's Telegram id (the copy is made from their chat)
    reply_to: int | None = None  # a relay: the recipient's copy of the message replied to
    copy_id: int | None = None  # an edit: the recipient's copy of the edited message
    title: str = ""  # an invitation: its ad's title
    message: str = ""  # an invitation: the first message
    skip: str | None = None  # nothing to send: a `Refusal` to record, or "done" when it is moot


def _item(row: BoardOutbox) -> OutboxItem:
    return OutboxItem(row.id, row.recipient_id, row.kind, json.loads(row.payload), row.attempts)


class OutboxService(ServiceBase):
    # ---- writing ----------------------------------------------------------------------------------------

    def _enqueue(
        self,
        session: Session,
        recipient_id: int,
        kind: OutboxKind,
        payload: dict[str, Any],
        dedup_key: str | None = None,
    ) -> bool:
        """Queue a message in the caller's transaction; False if `dedup_key` was queued already."""
        now = self.clock()
        row = BoardOutbox(
            recipient_id=recipient_id,
            kind=kind.value,
            payload=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            state=OutboxState.PENDING.value,
            dedup_key=dedup_key,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        if dedup_key is None:
            session.add(row)
            return True
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            return False
        return True

    def _notice(
        self,
        session: Session,
        recipient_id: int,
        key: str,
        values: dict[str, object] | None = None,
        *,
        keyboard: dict[str, object] | None = None,
        reply_to: int | None = None,
        dedup_key: str | None = None,
        chat: str | None = None,
    ) -> bool:
        """Queue a catalogue text. `chat`: the notice opens that chat for the recipient, so a recipient who
        cannot be reached ends it (and the other side hears so)."""
        payload: dict[str, Any] = {"key": key, "values": values or {}}
        if keyboard:
            payload["keyboard"] = keyboard
        if reply_to is not None:
            payload["reply_to"] = reply_to
        if chat is not None:
            payload["chat"] = chat
        return self._enqueue(session, recipient_id, OutboxKind.NOTICE, payload, dedup_key)

    def enqueue_notice(
        self,
        recipient_id: int,
        key: str,
        values: dict[str, object] | None = None,
        *,
        keyboard: dict[str, object] | None = None,
        reply_to: int | None = None,
        dedup_key: str | None = None,
    ) -> bool:
        """Queue a catalogue text for a board user (rendered in their language when it is sent)."""
        with self._tx() as session:
            return self._notice(
                session, recipient_id, key, values, keyboard=keyboard, reply_to=reply_to, dedup_key=dedup_key
            )

    def enqueue_own_edit(
        self,
        recipient_id: int,
        message_id: int,
        key: str | None = None,
        values: dict[str, object] | None = None,
        dedup_key: str | None = None,
    ) -> bool:
        """Queue an edit of a message the bot sent: its text replaced by `key` (buttons dropped), or, without a
        key, only its buttons dropped."""
        payload: dict[str, Any] = {"message_id": message_id}
        if key is not None:
            payload.update(key=key, values=values or {})
        with self._tx() as session:
            return self._enqueue(session, recipient_id, OutboxKind.OWN_EDIT, payload, dedup_key)

    # ---- the sender's side ------------------------------------------------------------------------------

    def pending_outbox(self, after_id: int = 0, limit: int = 2000, recipient_id: int | None = None) -> list[OutboxItem]:
        """Pending rows with an id above `after_id` (for one recipient, or all), oldest first."""
        conditions = [BoardOutbox.state == OutboxState.PENDING.value, BoardOutbox.id > after_id]
        if recipient_id is not None:
            conditions.append(BoardOutbox.recipient_id == recipient_id)
        with self.sessions() as session:
            rows = session.scalars(select(BoardOutbox).where(*conditions).order_by(BoardOutbox.id).limit(limit)).all()
            return [_item(row) for row in rows]

    def outbox_backlog(self) -> int:
        with self.sessions() as session:
            return (
                session.scalar(
                    select(func.count()).select_from(BoardOutbox).where(BoardOutbox.state == OutboxState.PENDING.value)
                )
                or 0
            )

    def claim_outbox(self, item_id: int) -> Prepared | None:
        """Take a pending row for sending (pending → sending) with what rendering it needs; None if it is not
        pending any more, or its recipient is gone (then it is dropped)."""
        with self._tx() as session:
            claimed = session.execute(
                update(BoardOutbox)
                .where(BoardOutbox.id == item_id, BoardOutbox.state == OutboxState.PENDING.value)
                .values(state=OutboxState.SENDING.value, attempts=BoardOutbox.attempts + 1, updated_at=self.clock())
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(BoardOutbox, item_id)
            assert row is not None
            recipient = session.get(BoardUser, row.recipient_id)
            if recipient is None:
                session.delete(row)
                return None
            item = _item(row)
            prepared = Prepared(item, self._tg_id(recipient.tg_enc), recipient.lang)
            return self._prepare(session, prepared)

    def _prepare(self, session: Session, prepared: Prepared) -> Prepared:
        item, payload = prepared.item, prepared.item.payload
        kind = item.kind
        if kind == OutboxKind.INVITE:
            invite = session.scalar(select(BoardInvite).where(BoardInvite.public_id == payload.get("invite")))
            ad = session.get(BoardAd, invite.ad_id) if invite is not None else None
            if invite is None or ad is None or invite.status != InviteStatus.PENDING.value:
                return _replace(prepared, skip="done")  # answered, withdrawn or gone before its turn
            return _replace(prepared, title=ad.title, message=invite.message)
        if kind not in (OutboxKind.RELAY, OutboxKind.EDIT):
            return prepared
        chat = session.scalar(select(BoardChat).where(BoardChat.public_id == payload.get("chat")))
        sender = session.get(BoardUser, payload.get("sender"))
        if chat is None or sender is None:
            return _replace(prepared, skip=Refusal.UNRENDERABLE.value)
        if chat.silent_user_id == item.recipient_id:
            return _replace(prepared, skip="done")  # they left this chat silently: nothing reaches them
        if kind == OutboxKind.EDIT:
            copy_id = session.scalar(
                select(BoardMessage.dst_message_id).where(
                    BoardMessage.chat_id == chat.id,
                    BoardMessage.sender_id == sender.id,
                    BoardMessage.src_message_id == payload.get("src"),
                )
            )
            return _replace(prepared, copy_id=copy_id, skip=None if copy_id is not None else "done")
        if chat.status != ChatStatus.ACTIVE.value:
            return _replace(prepared, skip=Refusal.CHAT_ENDED.value)
        message = payload.get("message") or {}
        reply = message.get("r")
        mapped = None if reply is None else self._counterpart_in(session, chat, sender.id, int(reply))
        return _replace(prepared, from_chat_id=self._tg_id(sender.tg_enc), reply_to=mapped)

    def outbox_sent(self, item_id: int, sent_ids: list[int]) -> None:
        """Telegram took it: record what the row's effects need (a relay's id pairs), and forget the row."""
        with self._tx() as session:
            row = session.get(BoardOutbox, item_id)
            if row is None:
                return
            item = _item(row)
            if item.kind == OutboxKind.RELAY and sent_ids:
                self._record_relay_pairs(session, item, sent_ids)
            if row.dedup_key is None:
                session.delete(row)
            else:  # its key must outlive it: checking for it and inserting it again are not one step
                row.state = OutboxState.SENT.value
                row.updated_at = self.clock()

    def release_outbox(self, item_id: int) -> None:
        """Not sent this time (a flood wait, Telegram or the network unavailable): pending again, same place."""
        with self._tx() as session:
            session.execute(
                update(BoardOutbox)
                .where(BoardOutbox.id == item_id, BoardOutbox.state == OutboxState.SENDING.value)
                .values(state=OutboxState.PENDING.value, updated_at=self.clock())
            )

    def outbox_refused(self, item_id: int, refusal: str) -> None:
        """Refused for good (or moot): the row is settled, and a relay's sender hears why in their language."""
        with self._tx() as session:
            row = session.get(BoardOutbox, item_id)
            if row is None:
                return
            item = _item(row)
            row.state = OutboxState.FAILED.value
            row.updated_at = self.clock()
            if refusal == "done":
                if row.dedup_key is None:
                    session.delete(row)
                else:
                    row.state = OutboxState.SENT.value
                return
            if item.kind == OutboxKind.RELAY:
                self._relay_refused(session, item, refusal)
            elif item.kind == OutboxKind.NOTICE and item.payload.get("chat") and refusal == Refusal.BLOCKED:
                self._unreachable(session, str(item.payload["chat"]), item.recipient_id)

    def outbox_interrupted(self) -> int:
        """At start: rows a killed process left in `sending` may have been delivered. They are never sent again
        (at most once); a relay's sender is told it may not have arrived. Returns how many."""
        with self._tx() as session:
            rows = session.scalars(select(BoardOutbox).where(BoardOutbox.state == OutboxState.SENDING.value)).all()
            for row in rows:
                row.state = OutboxState.UNKNOWN.value
                row.updated_at = self.clock()
                item = _item(row)
                if item.kind == OutboxKind.RELAY:
                    message = item.payload.get("message") or {}
                    first = (message.get("m") or [None])[0]
                    self._notice(session, int(item.payload["sender"]), "relay.uncertain", reply_to=first)
            return len(rows)

    def prune_outbox(self) -> int:
        """Forget settled rows (sent with a key, failed, unknown) after a day."""
        cutoff = self.clock() - KEEP_SETTLED
        with self._tx() as session:
            result = session.execute(
                delete(BoardOutbox).where(
                    BoardOutbox.state.in_(
                        [OutboxState.SENT.value, OutboxState.FAILED.value, OutboxState.UNKNOWN.value]
                    ),
                    BoardOutbox.updated_at < cutoff,
                )
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _replace(prepared: Prepared, **changes: object) -> Prepared:
    return replace(prepared, **changes)  # type: ignore[arg-type]
