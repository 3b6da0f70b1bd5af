"""Private chats (between the accounts, with themselves, and with @SpamBot) and the account's update state.

Each account sees its chats with its own message ids and its own pts (one more per message in or out, per edit,
per read). As on Telegram, what one account does in a chat with another is pushed, as `updates` with the users
they name, to every live connection subscribed to updates (pushes.py): messages.sendMessage an `updateNewMessage`
to the recipient (and to the sender's other connections), messages.editMessage an `updateEditMessage` to both
sides, messages.readHistory an `updateReadHistoryOutbox` to the sender. A client that was not connected catches
up with updates.getDifference (new messages, and the edits and read marks as other_updates), once it notices the
gap in pts. A message a test delivers (`MTProtoServer.deliver`) arrives the same way. @SpamBot answers each
message with the account's spam status (`Account.spam`: "free", "limited", or "silent" for no answer) after
`Account.spam_delay` seconds; the answer is not pushed: it is delivered at the account's first request after that.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from telethon.tl import functions, types

from .pushes import edit_between, message_object, read_between, send_between, store_message
from .rpc import SPAMBOT, Bot, Context, RpcFault, input_user, me, now, timestamp, user_object, users_of
from .store import Account, PendingMessage, Store

SPAM_FREE = "Good news, no limits are currently applied to your account. You’re free as a bird!"
SPAM_LIMITED = (
    "I’m afraid some Telegram users found your messages annoying and forwarded them to our team of moderators "
    "for inspection. The moderators have confirmed the report and your account is now limited until "
    "1 Jan 2030, 12:00 UTC.\n\nWhile the account is limited, you will not be able to send messages to people "
    "who do not have your number in their phone contacts or add them to groups and channels. Of course, when "
    "people contact you first, you can always reply to them."
)
SPAM_REPLIES = {"free": SPAM_FREE, "limited": SPAM_LIMITED}
MESSAGE_MAX = 4096
HISTORY_LIMIT_MAX = 100
USERNAME_SHAPE = re.compile(r"[A-Za-z0-9_]{1,32}")


def deliver_due(store: Store, account: Account) -> None:
    """Messages whose time has come (a bot's answer) arrive in the account's chats (lock held)."""
    if not account.pending:
        return
    moment = time.time()
    due = [p for p in account.pending if p.due <= moment]
    account.pending = [p for p in account.pending if p.due > moment]
    for pending in sorted(due, key=lambda p: p.due):
        store_message(account, pending.peer_id, out=False, text=pending.text)


def _peer(ctx: Context, peer: object) -> Account | Bot:
    who = input_user(ctx, peer, check_hash=True)
    if who is None:
        raise RpcFault(400, "PEER_ID_INVALID")
    return who


def resolve_username(ctx: Context, request: functions.contacts.ResolveUsernameRequest) -> Any:
    me(ctx)
    name = request.username.lstrip("@")
    if not USERNAME_SHAPE.fullmatch(name):
        raise RpcFault(400, "USERNAME_INVALID")
    wanted = name.lower()
    bots = (SPAMBOT,) if ctx.store.spambot_known else ()
    found: Account | Bot | None = next((b for b in bots if b.username.lower() == wanted), None)
    found = found or next((a for a in ctx.store.accounts.values() if (a.username or "").lower() == wanted), None)
    if found is None:
        raise RpcFault(400, "USERNAME_NOT_OCCUPIED")
    return types.contacts.ResolvedPeer(peer=types.PeerUser(found.user_id), chats=[], users=[user_object(ctx, found)])


def send_message(ctx: Context, request: functions.messages.SendMessageRequest) -> types.UpdateShortSentMessage:
    account = me(ctx)
    peer = _peer(ctx, request.peer)
    text = _text(request.message)
    if request.random_id in account.random_ids:
        raise RpcFault(500, "RANDOM_ID_DUPLICATE")
    if isinstance(peer, Account) and peer is not account and account.spam == "limited":
        raise RpcFault(400, "PEER_FLOOD")  # a limited account may not write first to people
    account.random_ids.add(request.random_id)
    sent, _pushed = send_between(ctx.outbox, account, peer, text)
    if peer is SPAMBOT:
        reply = account.spam_reply or SPAM_REPLIES.get(account.spam)
        if reply is not None:
            account.pending.append(PendingMessage(time.time() + account.spam_delay, SPAMBOT.user_id, reply))
    return types.UpdateShortSentMessage(id=sent.id, pts=sent.pts, pts_count=1, date=timestamp(sent.date), out=True)


def _text(text: str | None) -> str:
    if text is None or not text.strip():
        raise RpcFault(400, "MESSAGE_EMPTY")
    if len(text) > MESSAGE_MAX:
        raise RpcFault(400, "MESSAGE_TOO_LONG")
    return text


def edit_message(ctx: Context, request: functions.messages.EditMessageRequest) -> types.Updates:
    """The account's own message in the chat with `peer` gets a new text, on both sides (the peer is pushed an
    `updateEditMessage`). Only the text: media, entities and markup are not kept."""
    account = me(ctx)
    peer = _peer(ctx, request.peer)
    message = next((m for m in account.messages if m.id == request.id and m.peer_id == peer.user_id), None)
    if message is None:
        raise RpcFault(400, "MESSAGE_ID_INVALID")
    if not message.out:
        raise RpcFault(403, "MESSAGE_AUTHOR_REQUIRED")
    if request.message is None or request.message == message.text:
        raise RpcFault(400, "MESSAGE_NOT_MODIFIED")
    update, _pushed = edit_between(ctx.outbox, account, message, _text(request.message))
    users = users_of(ctx, account, [peer.user_id])
    return types.Updates(updates=[update], users=users, chats=[], date=now(), seq=0)


def read_history(ctx: Context, request: functions.messages.ReadHistoryRequest) -> types.messages.AffectedMessages:
    """The account's incoming messages with `peer` up to `max_id` (0: all) are read; the peer is pushed an
    `updateReadHistoryOutbox`. pts_count 0 (and the pts as it was) when there was nothing new to read."""
    read = read_between(ctx.outbox, me(ctx), _peer(ctx, request.peer).user_id, request.max_id)
    return types.messages.AffectedMessages(pts=read.pts, pts_count=read.pts_count)


def get_history(ctx: Context, request: functions.messages.GetHistoryRequest) -> Any:
    """Newest first: from below `offset_id` (or `offset_date`), shifted by `add_offset`, at most `limit`, within
    (`min_id`, `max_id`)."""
    account = me(ctx)
    peer = _peer(ctx, request.peer)
    chat = [m for m in reversed(account.messages) if m.peer_id == peer.user_id]
    start = 0
    if request.offset_id:
        start = next((i for i, m in enumerate(chat) if m.id < request.offset_id), len(chat))
    elif request.offset_date and request.offset_date.timestamp() > 0:  # an unset date arrives as 0 (1970)
        limit_date = request.offset_date.timestamp()
        start = next((i for i, m in enumerate(chat) if m.date < limit_date), len(chat))
    start = max(0, start + request.add_offset)
    chosen = chat[start : start + min(max(request.limit, 0), HISTORY_LIMIT_MAX)]
    chosen = [m for m in chosen if m.id > request.min_id and (not request.max_id or m.id < request.max_id)]
    messages = [message_object(account, m) for m in chosen]
    users = users_of(ctx, account, [peer.user_id])
    if len(chosen) == len(chat):
        return types.messages.Messages(messages=messages, topics=[], chats=[], users=users)
    return types.messages.MessagesSlice(count=len(chat), messages=messages, topics=[], chats=[], users=users)


def _state(account: Account) -> types.updates.State:
    return types.updates.State(pts=account.pts, qts=0, date=now(), seq=1, unread_count=0)


def get_state(ctx: Context, _request: functions.updates.GetStateRequest) -> types.updates.State:
    return _state(me(ctx))


def get_difference(ctx: Context, request: functions.updates.GetDifferenceRequest) -> Any:
    """What happened after `pts`: the new messages (as they are now), and the edits and read marks."""
    account = me(ctx)
    new = [m for m in account.messages if m.pts > request.pts]
    events = [e for e in account.events if e.pts > request.pts]
    if not new and not events:
        return types.updates.DifferenceEmpty(date=now(), seq=1)
    return types.updates.Difference(
        new_messages=[message_object(account, m) for m in new],
        new_encrypted_messages=[],
        other_updates=[e.update for e in events],
        chats=[],
        users=users_of(ctx, account, [m.peer_id for m in new] + [e.peer_id for e in events]),
        state=_state(account),
    )


HANDLERS: dict[type, Callable[[Context, Any], object]] = {
    functions.contacts.ResolveUsernameRequest: resolve_username,
    functions.messages.SendMessageRequest: send_message,
    functions.messages.EditMessageRequest: edit_message,
    functions.messages.ReadHistoryRequest: read_history,
    functions.messages.GetHistoryRequest: get_history,
    functions.updates.GetStateRequest: get_state,
    functions.updates.GetDifferenceRequest: get_difference,
}
