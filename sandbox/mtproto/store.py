"""What the server remembers: accounts (profile, 2FA, photos, messages), auth keys (and whom they are logged in
as: one auth key is one authorisation), sessions, the call log, the faults a test asked for, and which
connections are open. Guarded by one lock: the server's loop thread and the test's thread both use it.

What every request looks up is indexed, so that ten thousand clients cost no more per request than one:
accounts by user id, live connections by auth key and by the user they are logged in as.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .crypto import AuthKeyData, SrpChallenge, SrpVerifier


def random_long() -> int:
    return int.from_bytes(os.urandom(8), "little", signed=True)


def normalize_phone(phone: str) -> str:
    """Digits only, as Telethon sends phone numbers ("+1 555..." -> "1555...")."""
    return re.sub(r"\D", "", phone)


@dataclass
class Account:
    phone: str  # digits only
    code: str
    user_id: int
    first_name: str
    last_name: str = ""
    username: str | None = None
    password: str | None = None
    verifier: SrpVerifier | None = None
    access_hash: int = field(default_factory=random_long)
    banned: bool = False
    about: str = ""
    premium: bool = False
    hint: str = ""  # of the 2FA password
    restrictions: list[tuple[str, str, str]] = field(default_factory=list)  # (platform, reason, text)
    spam: str = "free"  # what @SpamBot answers: "free", "limited" or "silent" (no answer)
    spam_reply: str | None = None  # instead of the standard text of `spam`
    spam_delay: float = 0.0  # seconds before @SpamBot's answer shows
    photos: list[ProfilePhoto] = field(default_factory=list)  # newest first; photos[0] is the current one
    pts: int = 1  # the account's update sequence (each message in or out, edit and read adds one)
    messages: list[StoredMessage] = field(default_factory=list)  # every private-chat message, oldest first
    events: list[StoredEvent] = field(default_factory=list)  # the other updates with a pts (edits, reads)
    pending: list[PendingMessage] = field(default_factory=list)  # messages to arrive later (a bot's answer)
    random_ids: set[int] = field(default_factory=set)  # of messages.sendMessage, against resends


@dataclass
class ProfilePhoto:
    id: int
    access_hash: int
    date: float
    kind: str  # "jpeg" or "png"
    width: int
    height: int
    data: bytes


@dataclass
class StoredMessage:
    """A message in one of an account's private chats, as that account sees it (its own ids and pts)."""

    id: int
    peer_id: int  # the user on the other side
    out: bool
    text: str
    date: float
    pts: int
    link: int = 0  # shared by the two copies of a message between two accounts (0: there is one copy)
    edited: float | None = None  # time.time() of its last edit
    read: bool = False  # outgoing: the peer has read it; incoming: this account has


@dataclass
class StoredEvent:
    """An update with a pts other than a new message (an edit, a read mark), for updates.getDifference."""

    pts: int
    update: Any  # the TL update as the account was sent it (updateEditMessage, updateReadHistoryOutbox, ...)
    peer_id: int  # the user it names


@dataclass
class PendingMessage:
    due: float  # time.time() when it arrives
    peer_id: int  # who sends it
    text: str


@dataclass
class ServerSession:
    """One MTProto session (the client's session_id) of an auth key: our msg_id and seq_no counters."""

    session_id: int
    last_msg_id: int = 0
    sequence: int = 0
    announced: bool = False  # new_session_created sent
    seen: deque[int] = field(default_factory=lambda: deque(maxlen=500))


@dataclass
class AuthKeyRecord:
    auth_key: AuthKeyData
    salt: int
    user_id: int | None = None  # logged in as
    sessions: dict[int, ServerSession] = field(default_factory=dict)
    sent_codes: dict[str, str] = field(default_factory=dict)  # phone -> phone_code_hash
    password_user: int | None = None  # signed in with the code, the 2FA password still to come
    srp: SrpChallenge | None = None
    init_connection: dict[str, Any] | None = None  # the last initConnection's device fields
    # As account.getAuthorizations shows it: `hash` names it to account.resetAuthorization; `device` overrides
    # what initConnection said (device_model, platform, app_name, country, ...), for made-up authorisations.
    hash: int = field(default_factory=lambda: random_long() or 1)
    created: float = field(default_factory=time.time)  # when the key was made
    logged_in: float | None = None  # when it was logged in (the current login)
    active: float = field(default_factory=time.time)  # its last request
    device: dict[str, Any] = field(default_factory=dict)
    new_salt1: bytes | None = None  # the new_algo.salt1 of the last account.getPassword (a new password's prefix)
    uploads: dict[int, dict[int, bytes]] = field(default_factory=dict)  # file_id -> part number -> bytes


@dataclass(frozen=True)
class Call:
    """One RPC the server received (wrappers removed): TL method name and the account it ran as (before a
    login: the phone number auth.sendCode / auth.signIn named; digits only)."""

    method: str
    phone: str | None
    auth_key_id: int


@dataclass
class FloodRule:
    phone: str | None  # None: every account (and calls made before login)
    remaining: int
    seconds: int
    method: str | None = None


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.keys: dict[int, AuthKeyRecord] = {}
        self.calls: list[Call] = []
        self.record_calls = True  # off: `calls` stays empty (a benchmark's millions of pings)
        self.floods: list[FloodRule] = []
        self.connections: set[Any] = set()  # open `Connection`s
        self.peak: dict[str, int] = {}  # phone -> most connections it ever had open at once
        self.duplicates: list[str] = []  # phones (or key ids) refused with AUTH_KEY_DUPLICATED
        self.refuse_duplicates = False
        self.stalled = False
        self._next_user_id = 100000
        self._next_link = 0
        self.fresh_reset_window = 0.0  # seconds after its login a key may not end other authorisations
        self.spambot_known = True  # @SpamBot resolves by its username (a server without it: USERNAME_NOT_OCCUPIED)
        self._by_user_id: dict[int, Account] = {}
        self._live_by_key: dict[int, set[Any]] = {}  # auth key id -> its live connections
        self._live_by_user: dict[int | None, set[Any]] = {}  # user id (None: not logged in) -> live connections

    def new_user_id(self) -> int:
        self._next_user_id += 1
        return self._next_user_id

    def new_link(self) -> int:
        """A key for the two copies of one message between two accounts."""
        self._next_link += 1
        return self._next_link

    def log_call(self, method: str, phone: str | None, auth_key_id: int) -> None:
        if self.record_calls:
            self.calls.append(Call(method, phone, auth_key_id))

    # --- accounts by user id

    def add_account(self, account: Account) -> None:
        self.accounts[account.phone] = account
        self._by_user_id[account.user_id] = account

    def account_of(self, record: AuthKeyRecord | None) -> Account | None:
        if record is None or record.user_id is None:
            return None
        return self.account_by_id(record.user_id)

    def account_by_id(self, user_id: int | None) -> Account | None:
        if not user_id:
            return None
        found = self._by_user_id.get(user_id)
        if found is not None and found.user_id == user_id and self.accounts.get(found.phone) is found:
            return found
        if found is None and len(self._by_user_id) == len(self.accounts):
            return None  # the index is whole: there is no such account
        # An account put into `accounts` directly (or replaced there): index them all again.
        self._by_user_id = {a.user_id: a for a in self.accounts.values()}
        return self._by_user_id.get(user_id)

    # --- live connections

    def attach(self, connection: Any) -> None:
        """A connection became live (its first encrypted message): index it by its key and its user."""
        record = connection.record
        self.connections.add(connection)
        self._live_by_key.setdefault(record.auth_key.key_id, set()).add(connection)
        connection.indexed_user = record.user_id
        self._live_by_user.setdefault(record.user_id, set()).add(connection)

    def reindex(self, connection: Any) -> None:
        """After a request of the connection: its key may be logged in as someone else now (a login, a
        log-out); other changes of a key's user close its connections."""
        record = connection.record
        if record is None or connection.indexed_user == record.user_id or connection not in self.connections:
            return
        self._discard(self._live_by_user, connection.indexed_user, connection)
        connection.indexed_user = record.user_id
        self._live_by_user.setdefault(record.user_id, set()).add(connection)

    def detach(self, connection: Any) -> None:
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self._discard(self._live_by_key, connection.record.auth_key.key_id, connection)
        self._discard(self._live_by_user, connection.indexed_user, connection)

    @staticmethod
    def _discard(index: dict[Any, set[Any]], key: Any, connection: Any) -> None:
        live = index.get(key)
        if live is not None:
            live.discard(connection)
            if not live:
                del index[key]

    def connections_of_key(self, record: AuthKeyRecord) -> list[Any]:
        return list(self._live_by_key.get(record.auth_key.key_id, ()))

    def connections_of_user(self, user_id: int) -> list[Any]:
        """Live connections whose key is logged in as the user."""
        return [c for c in self._live_by_user.get(user_id, ()) if c.record.user_id == user_id]

    def records_of(self, user_id: int) -> list[AuthKeyRecord]:
        """The auth keys logged in as the user (its authorisations), oldest first."""
        return sorted((r for r in self.keys.values() if r.user_id == user_id), key=lambda r: r.created)

    def unbind(self, record: AuthKeyRecord) -> None:
        """End an authorisation: its key gets AUTH_KEY_UNREGISTERED from now on; its live connections close."""
        record.user_id = None
        record.logged_in = None
        for connection in self.connections_of_key(record):
            connection.close()

    def phone_of(self, record: AuthKeyRecord | None) -> str | None:
        account = self.account_of(record)
        return account.phone if account else None

    def connections_of(self, phone: str) -> list[Any]:
        account = self.accounts.get(phone)
        if account is None:
            return []
        return self.connections_of_user(account.user_id)

    def note_peak(self, phone: str | None) -> None:
        if phone is not None:
            self.peak[phone] = max(self.peak.get(phone, 0), len(self.connections_of(phone)))

    def take_flood(self, phone: str | None, method: str) -> int | None:
        """Seconds of FLOOD_WAIT for this call, if a flood rule covers it (consuming one of its calls)."""
        for rule in self.floods:
            if rule.remaining > 0 and rule.phone in (None, phone) and rule.method in (None, method):
                rule.remaining -= 1
                return rule.seconds
        return None
