"""What an account does in a private chat, and the updates Telegram pushes for it to live connections.

A message sent: `updateNewMessage` to the recipient, and (with `out`) to the sender's other connections. Edited:
`updateEditMessage` to both sides. Read: `updateReadHistoryOutbox` to the sender (peer: the reader, max_id: the
sender's own id of the last message read), `updateReadHistoryInbox` to the reader's other connections. Each side
has its own message ids and pts (each change adds one to the pts of every account it touches); the two copies of a
message between two accounts share a `link`. What is not a new message is kept in `Account.events`, for
updates.getDifference. The API handlers (messages_api.py) and the server's control methods (`deliver`,
`edit_delivered`, `read`) both use these, with the lock held; the updates wait in an `Outbox` until it is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from telethon.tl import types

from .rpc import BOTS, Bot, Outbox, now, timestamp
from .store import Account, Store, StoredEvent, StoredMessage, normalize_phone


class Read(NamedTuple):
    pts: int  # the reader's, after
    pts_count: int  # 1, or 0 when there was nothing new to read
    pushed: int  # to how many live connections of the peer the read mark went


def store_message(account: Account, peer_id: int, *, out: bool, text: str, link: int = 0) -> StoredMessage:
    account.pts += 1
    message_id = account.messages[-1].id + 1 if account.messages else 1
    message = StoredMessage(message_id, peer_id, out, text, time.time(), account.pts, link=link)
    account.messages.append(message)
    return message


def message_object(account: Account, message: StoredMessage) -> types.Message:
    return types.Message(
        id=message.id,
        peer_id=types.PeerUser(message.peer_id),
        date=timestamp(message.date),
        message=message.text,
        out=message.out or None,
        from_id=types.PeerUser(account.user_id) if message.out else None,
        edit_date=timestamp(message.edited) if message.edited is not None else None,
    )


def new_message_update(account: Account, message: StoredMessage) -> types.UpdateNewMessage:
    """What a live connection of `account` is sent when `message` arrives in (or leaves) its chats: its pts
    follows the account's last one (no gap)."""
    return types.UpdateNewMessage(message_object(account, message), pts=message.pts, pts_count=1)


def send_between(outbox: Outbox, author: Account, peer: Account | Bot, text: str) -> tuple[StoredMessage, int]:
    """`author` sends `text` to `peer` (another account, itself, or a bot): stored in each side's chat, pushed to
    the peer's live connections and the author's other ones. The author's copy, and for how many of the peer's
    live connections it was queued."""
    other = isinstance(peer, Account) and peer is not author
    link = outbox.store.new_link() if other else 0
    sent = store_message(author, peer.user_id, out=True, text=text, link=link)
    outbox.queue(author, new_message_update(author, sent), [peer.user_id], timestamp(sent.date))
    if not isinstance(peer, Account) or not other:
        return sent, 0
    received = store_message(peer, author.user_id, out=False, text=text, link=link)
    return sent, outbox.queue(peer, new_message_update(peer, received), [author.user_id], timestamp(received.date))


def twin(store: Store, account: Account, message: StoredMessage) -> tuple[Account, StoredMessage] | None:
    """The other account's copy of a message between two accounts (None for a bot's or one's own chat)."""
    peer = store.account_by_id(message.peer_id)
    if not message.link or peer is None or peer is account:
        return None
    found = next((m for m in peer.messages if m.link == message.link), None)
    return (peer, found) if found is not None else None


def _event(outbox: Outbox, account: Account, update: Any, peer_id: int) -> int:
    """An update with a pts (the account's next) kept for getDifference and queued for its live connections."""
    account.events.append(StoredEvent(update.pts, update, peer_id))
    return outbox.queue(account, update, [peer_id], now())


def edit_between(
    outbox: Outbox, author: Account, message: StoredMessage, text: str
) -> tuple[types.UpdateEditMessage, int]:
    """The author of `message` (its copy) changes its text, on both sides: the author's `updateEditMessage`, and
    for how many of the peer's live connections the peer's was queued."""
    moment = time.time()

    def edit(owner: Account, copy: StoredMessage) -> tuple[types.UpdateEditMessage, int]:
        copy.text, copy.edited = text, moment
        owner.pts += 1
        update = types.UpdateEditMessage(message_object(owner, copy), pts=owner.pts, pts_count=1)
        return update, _event(outbox, owner, update, copy.peer_id)

    update, _pushed = edit(author, message)
    other = twin(outbox.store, author, message)
    return update, edit(*other)[1] if other is not None else 0


def read_between(outbox: Outbox, reader: Account, peer_id: int, max_id: int = 0) -> Read:
    """`reader` reads its chat with `peer_id` up to its message `max_id` (0: all of it): its incoming messages
    there are read, and so are the peer's copies (the peer is told with `updateReadHistoryOutbox`)."""
    chat = [m for m in reader.messages if m.peer_id == peer_id and not m.out]
    unread = [m for m in chat if not m.read and (not max_id or m.id <= max_id)]
    if not unread:
        return Read(reader.pts, 0, 0)
    for message in unread:
        message.read = True
    reader.pts += 1
    still = sum(1 for m in chat if not m.read)
    inbox = types.UpdateReadHistoryInbox(types.PeerUser(peer_id), unread[-1].id, still, reader.pts, 1)
    _event(outbox, reader, inbox, peer_id)
    copies = [found for m in unread if (found := twin(outbox.store, reader, m)) is not None]
    if not copies:
        return Read(reader.pts, 1, 0)
    peer = copies[0][0]
    for _peer, copy in copies:
        copy.read = True
    peer.pts += 1
    last = max(copy.id for _peer, copy in copies)
    update = types.UpdateReadHistoryOutbox(types.PeerUser(reader.user_id), last, peer.pts, 1)
    return Read(reader.pts, 1, _event(outbox, peer, update, reader.user_id))


async def apply(outbox: Outbox, change: Callable[[Outbox], int]) -> int:
    """`change` (a control method's) under the lock, then the updates it queued are sent (in the server's loop)."""
    with outbox.store.lock:
        pushed = change(outbox)
    await outbox.send()
    return pushed


def edit_received(outbox: Outbox, account: Account, message_id: int, text: str) -> int:
    """The sender of the message `message_id` that arrived for `account` (from another account) edits it; for how
    many of the account's live connections the edit was queued. KeyError if there is no such message."""
    message = next((m for m in account.messages if m.id == message_id and not m.out), None)
    found = twin(outbox.store, account, message) if message is not None else None
    if found is None:
        raise KeyError(f"{account.phone} has no message {message_id} from another account")
    return edit_between(outbox, found[0], found[1], text)[1]


def read_chat(outbox: Outbox, account: Account, peer: str) -> int:
    """`account` reads its whole chat with `peer` (see `peer_ids`); for how many of the peer's live connections
    the read mark was queued. KeyError if `peer` names nobody else."""
    ids = [user_id for user_id in peer_ids(outbox.store, peer) if user_id != account.user_id]
    if not ids:
        raise KeyError(f"no peer {peer}")
    return read_between(outbox, account, ids[0]).pushed


def peer_ids(store: Store, peer: str) -> list[int]:
    """The users `peer` names: a bot's or account's username (with or without "@"), or an account's phone."""
    wanted = peer.lstrip("@").lower()
    ids = [b.user_id for b in BOTS.values() if b.username.lower() == wanted]
    ids += [a.user_id for a in store.accounts.values() if (a.username or "").lower() == wanted]
    if not ids and normalize_phone(peer):
        ids = [a.user_id for a in store.accounts.values() if a.phone == normalize_phone(peer)]
    return ids
