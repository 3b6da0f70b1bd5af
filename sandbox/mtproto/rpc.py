"""What every API handler shares: the rpc_error exception, a handler's context (with the `Outbox` of the updates its
change pushes to live connections), and the users as they go on the wire (the accounts, and the built-in bots such
as @SpamBot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telethon.tl import types

from .store import Account, AuthKeyRecord, Store


class RpcFault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message = code, message


@dataclass
class Context:
    """What a handler may see: the server's state, this connection's auth key, the server's address."""

    store: Store
    record: AuthKeyRecord
    dc_id: int
    host: str
    port: int
    duplicate: bool = False  # this connection is a second live one of its auth key (and refusing is on)
    connection: Any = None  # the live connection the request came on (its answer tells it: nothing pushed)
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.outbox = Outbox(self.store, self.dc_id, self.host, self.port, skip=self.connection)

    @property
    def account(self) -> Account | None:
        return self.store.account_of(self.record)


class Outbox:
    """Updates for live connections, as Telegram pushes them: queued while the lock is held (so each connection
    gets them in pts order), sent once it is not. A handler queues them in `ctx.outbox` and the connection that
    asked sends them after its answer; the server's control methods, after their change.

    Each queued update goes to a connection's own queue (`Connection.outbox`), which it sends ahead of anything
    else it sends next, so an answer never overtakes an update with an earlier pts."""

    def __init__(self, store: Store, dc_id: int, host: str, port: int, *, skip: Any = None) -> None:
        self.store, self.dc_id, self.host, self.port = store, dc_id, host, port
        self.skip = skip  # a connection not to push to (the one whose request made the change)
        self.connections: list[Any] = []  # with updates queued, to send

    def live(self, account: Account) -> list[Any]:
        """The account's live connections subscribed to updates (but `skip`)."""
        found = self.store.connections_of_user(account.user_id)
        return [c for c in found if c.wants_updates and c is not self.skip]

    def queue(self, account: Account, update: Any, peer_ids: list[int], date: datetime) -> int:
        """`update` (as `updates`, with the users it names) for the account's live connections subscribed to
        updates (lock held); returns for how many."""
        live = self.live(account)
        if not live:
            return 0
        view = Context(self.store, live[0].record, self.dc_id, self.host, self.port)
        users = users_of(view, account, peer_ids)
        body = bytes(types.Updates(updates=[update], users=users, chats=[], date=date, seq=0))
        for connection in live:
            connection.outbox.append(body)
            if connection not in self.connections:
                self.connections.append(connection)
        return len(live)

    async def send(self) -> None:
        """Send what was queued (in the server's loop, the lock not held)."""
        connections, self.connections = self.connections, []
        for connection in connections:
            await connection.flush()


@dataclass(frozen=True)
class Bot:
    """A bot every account can reach, answered by the server itself."""

    user_id: int
    access_hash: int
    username: str
    first_name: str


SPAMBOT = Bot(user_id=178220800, access_hash=-2147283647123456789, username="SpamBot", first_name="Spam Info Bot")
BOTS = {SPAMBOT.user_id: SPAMBOT}


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def me(ctx: Context) -> Account:
    account = ctx.account
    if account is None:
        raise RpcFault(401, "AUTH_KEY_UNREGISTERED")
    return account


def user_object(ctx: Context, who: Account | Bot) -> types.User:
    """A user as this connection's account sees it (itself with `is_self` and its phone)."""
    if isinstance(who, Bot):
        return types.User(
            id=who.user_id,
            bot=True,
            verified=True,
            bot_nochats=True,
            access_hash=who.access_hash,
            first_name=who.first_name,
            username=who.username,
            bot_info_version=1,
        )
    restrictions = [types.RestrictionReason(*restriction) for restriction in who.restrictions]
    photo = types.UserProfilePhoto(photo_id=who.photos[0].id, dc_id=ctx.dc_id) if who.photos else None
    return types.User(
        id=who.user_id,
        is_self=who is ctx.account,
        access_hash=who.access_hash,
        first_name=who.first_name,
        last_name=who.last_name or None,
        username=who.username,
        phone=who.phone,
        premium=who.premium or None,
        restricted=bool(restrictions) or None,
        restriction_reason=restrictions or None,
        photo=photo,
    )


def users_of(ctx: Context, account: Account, peer_ids: list[int]) -> list[types.User]:
    """The account and the users `peer_ids` name, as `ctx`'s account sees them."""
    ids = dict.fromkeys([account.user_id, *peer_ids])
    return [user_object(ctx, who) for user_id in ids if (who := find_user(ctx, user_id)) is not None]


def find_user(ctx: Context, user_id: int | None) -> Account | Bot | None:
    if user_id is None:
        return None
    return BOTS.get(user_id) or ctx.store.account_by_id(user_id)


def input_user(ctx: Context, wanted: object, *, check_hash: bool = False) -> Account | Bot | None:
    """The account or bot an InputUser / InputPeerUser (or InputUserSelf / InputPeerSelf) names; with
    `check_hash`, None unless its access_hash is the one this server gave out."""
    if isinstance(wanted, types.InputUserSelf | types.InputPeerSelf):
        return me(ctx)
    who = find_user(ctx, getattr(wanted, "user_id", None))
    if who is None or who is ctx.account or not check_hash:
        return who
    return who if getattr(wanted, "access_hash", None) == who.access_hash else None
