"""The control surface: an MTProto server on 127.0.0.1 in a thread of its own, driven by a test.

    server = MTProtoServer().start()             # own RSA key pair, a free port, DC 2
    server.register_key_with_telethon()          # or TG_MTPROTO_PUBKEY=server.write_public_key(path)
    server.add_account("+15550000001", code="12345", password=None, first_name="Ann")
    client.session.set_dc(2, "127.0.0.1", server.port)  # or TG_MTPROTO_DC=server.dc_setting

Every method is safe to call from any thread. Faults: `revoke`, `ban`, `flood`, `refuse_duplicates`,
`drop_all`, `stall`. Observations: `calls`, `live_connections`, `peak_connections`, `duplicates`,
`init_connection`. Chats work as on Telegram (pushes.py): what an account sends, edits or reads is pushed to the
other side's live connections; `deliver`, `edit_delivered` and `read` do it from the test's side.
For many clients (process.py runs the server in a process of its own): `session_string(phone, auth_key=...)`
takes a key made beforehand (no key exchange per client), and `record_calls=False` keeps no call log.

What an account is like, as the account operations see it: `restrict` (restriction reason on the user),
`set_premium`, `set_spam` (what @SpamBot answers, and when), `add_authorization(s)` (other sessions of the
account, listed by account.getAuthorizations), `fresh_reset_window` (Telegram's "no ending other sessions
within 24 h of a login"), `backdate_logins`, `spambot_known` (False: @SpamBot does not resolve). What they
changed: `profile`, `photos`, `has_password` / `password_matches` / `password_hint`, `sessions`, `chat`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from .account_api import authorization_object
from .connection import Connection
from .crypto import DH_G, DH_PRIME, AuthKeyData, ServerKey, SrpVerifier, password_hash
from .messages_api import deliver_due
from .pushes import apply, edit_received, peer_ids, read_chat, send_between
from .rpc import Outbox
from .store import Account, AuthKeyRecord, Call, FloodRule, ProfilePhoto, Store, StoredMessage, normalize_phone

ALL = "all"
RESTRICTED_TEXT = "This account was restricted for violating the Telegram Terms of Service."


def new_auth_key() -> bytes:
    """256 random bytes for an auth key (not starting with a zero byte, as a DH result would not)."""
    while (key := os.urandom(256))[0] == 0:
        pass
    return key


class MTProtoServer:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        dc_id: int = 2,
        key: ServerKey | None = None,
        mtproxy_secret: bytes | None = None,
        refuse_duplicates: bool = False,
        record_calls: bool = True,
    ) -> None:
        self.host, self.port, self.dc_id = host, port, dc_id
        self.key = key or ServerKey()
        self.mtproxy_secret = mtproxy_secret
        self.store = Store()
        self.store.refuse_duplicates = refuse_duplicates
        self.store.record_calls = record_calls  # off: `calls()` stays empty (a benchmark's many clients)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mtproto-server", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[Connection] = set()  # every TCP connection, live or still in the key exchange
        self.accepted = 0  # TCP connections accepted so far
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> MTProtoServer:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, self.host, self.port, backlog=4096))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for connection in list(self._open):
                connection.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> MTProtoServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self._open.add(connection)
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            # `stop` cancels it; ending normally spares asyncio's start_server callback (3.11) from logging the
            # CancelledError that task.exception() raises for a cancelled task.
            pass
        finally:
            self._open.discard(connection)
            self._tasks.discard(task)

    # --- how clients find it ----------------------------------------------------------------------------------

    @property
    def dc_setting(self) -> str:
        """The worker's TG_MTPROTO_DC for this server: "2@127.0.0.1:PORT"."""
        return f"{self.dc_id}@{self.host}:{self.port}"

    @property
    def public_key_pem(self) -> str:
        return self.key.public_pem

    def write_public_key(self, path: str | Path) -> str:
        """Write the PEM for TG_MTPROTO_PUBKEY; returns the path."""
        Path(path).write_text(self.public_key_pem)
        return str(path)

    def register_key_with_telethon(self) -> None:
        """Let Telethon in this process encrypt to this server (as a current key, like the worker does)."""
        from telethon.crypto import rsa

        rsa.add_key(self.public_key_pem, old=False)

    def session_string(self, phone: str | None = None, *, auth_key: bytes | None = None) -> str:
        """A Telethon StringSession pointed at this server (DC, 127.0.0.1, port) with a fresh auth key (or
        `auth_key`, 256 bytes, made beforehand), logged in as `phone` if given: what `accounts import
        --session-string` takes. No key exchange is needed to use it."""
        from telethon.crypto import AuthKey
        from telethon.sessions import StringSession

        key = auth_key or new_auth_key()
        data = AuthKeyData(key)
        record = AuthKeyRecord(data, salt=int.from_bytes(os.urandom(8), "little", signed=True))
        with self.store.lock:
            if phone is not None:
                record.user_id = self._account(phone).user_id
                record.logged_in = time.time()
            self.store.keys[data.key_id] = record
        session = StringSession()
        session.set_dc(self.dc_id, self.host, self.port)
        session.auth_key = AuthKey(key)
        return str(session.save())

    # --- accounts ---------------------------------------------------------------------------------------------

    def add_account(
        self,
        phone: str,
        *,
        code: str = "12345",
        password: str | None = None,
        first_name: str = "Test",
        last_name: str = "",
        username: str | None = None,
        user_id: int | None = None,
        about: str = "",
        premium: bool = False,
    ) -> Account:
        """An account that can log in with `code` (and `password`, its 2FA, checked by SRP: ~0.1 s here)."""
        verifier = SrpVerifier.create(password) if password is not None else None
        with self.store.lock:
            account = Account(
                phone=normalize_phone(phone),
                code=code,
                user_id=user_id or self.store.new_user_id(),
                first_name=first_name,
                last_name=last_name,
                username=username,
                password=password,
                verifier=verifier,
                about=about,
                premium=premium,
            )
            self.store.add_account(account)
        return account

    def account(self, phone: str) -> Account:
        """The account with this phone number (any format); KeyError if there is none."""
        with self.store.lock:
            return self._account(phone)

    def _account(self, phone: str) -> Account:
        account = self.store.accounts.get(normalize_phone(phone))
        if account is None:
            raise KeyError(f"no account {phone}")
        return account

    def authorizations(self, phone: str) -> int:
        """How many auth keys are logged in as this account."""
        with self.store.lock:
            user_id = self._account(phone).user_id
            return sum(1 for record in self.store.keys.values() if record.user_id == user_id)

    def restrict(
        self, phone: str, text: str | None = RESTRICTED_TEXT, *, reason: str = "spam", platform: str = "all"
    ) -> None:
        """Telegram restricts the account: its user has `restricted` and a restriction_reason (platform, reason,
        text); `text=None` lifts it."""
        with self.store.lock:
            self._account(phone).restrictions = [] if text is None else [(platform, reason, text)]

    def set_premium(self, phone: str, premium: bool = True) -> None:
        with self.store.lock:
            self._account(phone).premium = premium

    def set_spam(self, phone: str, state: str = "limited", *, reply: str | None = None, delay: float = 0.0) -> None:
        """What @SpamBot answers the account: "free", "limited" (a limited account also gets PEER_FLOOD writing
        to another account) or "silent" (no answer); `reply` instead of the standard text; after `delay` s."""
        if state not in ("free", "limited", "silent"):
            raise ValueError(f"unknown spam state {state!r}")
        with self.store.lock:
            account = self._account(phone)
            account.spam, account.spam_reply, account.spam_delay = state, reply, delay

    def deliver(self, phone: str, text: str, *, sender: str) -> int:
        """A message from the account `sender` arrives for the account `phone`: stored in both chats and pushed to
        the live connections (subscribed to updates) of both; returns to how many of `phone`'s."""
        return self._push(lambda outbox: send_between(outbox, self._account(sender), self._account(phone), text)[1])

    def edit_delivered(self, phone: str, message_id: int, text: str) -> int:
        """Its sender edits the message `message_id` (its id as `chat(phone, ...)` shows it) that arrived for
        `phone`, as `deliver` does. KeyError if `phone` has no such message from an account."""
        return self._push(lambda outbox: edit_received(outbox, self._account(phone), message_id, text))

    def read(self, phone: str, peer: str) -> int:
        """`phone` reads its chat with `peer` (a phone or username; `chat` shows `read` then), and the peer's live
        connections are pushed `updateReadHistoryOutbox`; returns to how many."""
        return self._push(lambda outbox: read_chat(outbox, self._account(phone), peer))

    def _push(self, change: Callable[[Outbox], int]) -> int:
        """`change` under the lock in the server's loop, then the updates it queued are sent."""
        return int(self._run(apply(Outbox(self.store, self.dc_id, self.host, self.port), change)))

    def add_authorization(
        self,
        phone: str,
        *,
        device_model: str = "iPhone 15",
        platform: str = "ios",
        system_version: str = "iOS 17.4",
        app_name: str = "Telegram iOS",
        app_version: str = "10.9.1",
        api_id: int = 8,
        official_app: bool = True,
        ip: str = "203.0.113.7",
        country: str = "Germany",
        region: str = "Berlin",
        age: float = 86400.0,
    ) -> int:
        """Another authorisation of the account (an auth key of its own, made `age` seconds ago, nobody connected
        with it), as account.getAuthorizations lists it; returns its hash."""
        data = AuthKeyData(new_auth_key())
        created = time.time() - age
        record = AuthKeyRecord(data, salt=int.from_bytes(os.urandom(8), "little", signed=True), created=created)
        record.logged_in, record.active = created, time.time() - min(age, 3600.0)
        record.init_connection = {"api_id": api_id, "device_model": device_model, "system_version": system_version}
        record.init_connection["app_version"] = app_version
        record.device = {"platform": platform, "app_name": app_name, "official_app": official_app}
        record.device |= {"ip": ip, "country": country, "region": region}
        with self.store.lock:
            record.user_id = self._account(phone).user_id
            self.store.keys[data.key_id] = record
        return record.hash

    def add_authorizations(self, phone: str, count: int) -> list[int]:
        """`count` other authorisations (phones and desktops of assorted kinds); their hashes."""
        kinds = [
            {"device_model": "Samsung Galaxy S23", "platform": "android", "system_version": "SDK 34"},
            {"device_model": "MacBook Pro", "platform": "macos", "system_version": "macOS 14.4"},
            {"device_model": "iPhone 15", "platform": "ios", "system_version": "iOS 17.4"},
        ]
        return [self.add_authorization(phone, **kinds[i % len(kinds)]) for i in range(count)]

    @property
    def fresh_reset_window(self) -> float:
        """Seconds after its login an authorisation may not end others (FRESH_RESET_AUTHORISATION_FORBIDDEN, 406;
        Telegram: 24 h). 0 (the default): no such rule."""
        with self.store.lock:
            return self.store.fresh_reset_window

    @fresh_reset_window.setter
    def fresh_reset_window(self, seconds: float) -> None:
        with self.store.lock:
            self.store.fresh_reset_window = seconds

    @property
    def spambot_known(self) -> bool:
        """Whether @SpamBot resolves by its username (True, as on Telegram); False: a server without it, where
        contacts.resolveUsername answers USERNAME_NOT_OCCUPIED."""
        with self.store.lock:
            return self.store.spambot_known

    @spambot_known.setter
    def spambot_known(self, known: bool) -> None:
        with self.store.lock:
            self.store.spambot_known = known

    def backdate_logins(self, phone: str, seconds: float) -> None:
        """Every authorisation of the account logged in `seconds` earlier than it was (a day-old session)."""
        with self.store.lock:
            user_id = self._account(phone).user_id
            for record in self.store.keys.values():
                if record.user_id == user_id:
                    record.logged_in = (record.logged_in or record.created) - seconds
                    record.created -= seconds

    # --- what the account is like now -------------------------------------------------------------------------

    def profile(self, phone: str) -> dict[str, Any]:
        """first_name, last_name, about, username, premium, restricted, photos (how many)."""
        with self.store.lock:
            account = self._account(phone)
            return {
                "first_name": account.first_name,
                "last_name": account.last_name,
                "about": account.about,
                "username": account.username,
                "premium": account.premium,
                "restricted": bool(account.restrictions),
                "photos": len(account.photos),
            }

    def photos(self, phone: str) -> list[ProfilePhoto]:
        """The account's profile photos, newest (the current one) first."""
        with self.store.lock:
            return list(self._account(phone).photos)

    def has_password(self, phone: str) -> bool:
        with self.store.lock:
            return self._account(phone).verifier is not None

    def password_matches(self, phone: str, password: str) -> bool:
        """Whether `password` is the account's 2FA password now (~0.1 s)."""
        with self.store.lock:
            verifier = self._account(phone).verifier
        if verifier is None:
            return False
        return pow(DH_G, password_hash(password, verifier.salt1, verifier.salt2), DH_PRIME) == verifier.v

    def password_hint(self, phone: str) -> str:
        with self.store.lock:
            return self._account(phone).hint

    def sessions(self, phone: str) -> list[dict[str, Any]]:
        """Every authorisation of the account (oldest first), as account.getAuthorizations shows it to another
        session (hash, device_model, platform, app_name, country, ...), plus `live`: connected now."""
        with self.store.lock:
            account = self._account(phone)
            found = []
            for record in self.store.records_of(account.user_id):
                shown = authorization_object(record, current=False).to_dict()
                shown.pop("_", None)
                shown["live"] = any(c.record is record for c in self.store.connections)
                found.append(shown)
            return found

    def chat(self, phone: str, peer: str = "SpamBot") -> list[StoredMessage]:
        """The account's messages with `peer` (a bot's or account's username, or an account's phone), oldest
        first, as the account sees them (only what has arrived by now; `read`: an outgoing one the peer has read,
        an incoming one the account has), as they are now (copies)."""
        with self.store.lock:
            account = self._account(phone)
            deliver_due(self.store, account)
            ids = peer_ids(self.store, peer)
            return [dataclasses.replace(m) for m in account.messages if m.peer_id in ids]

    # --- faults -----------------------------------------------------------------------------------------------

    def revoke(self, phone: str) -> None:
        """Terminate every authorization of the account: their auth keys get AUTH_KEY_UNREGISTERED (401) from
        the next request on, and their live connections are closed now."""
        user_id = self.account(phone).user_id

        def unbind() -> None:
            for record in self.store.keys.values():
                if record.user_id == user_id:
                    record.user_id = None

        self._close(lambda c: c.record is not None and c.record.user_id == user_id, then=unbind)

    def ban(self, phone: str, banned: bool = True) -> None:
        """USER_DEACTIVATED_BAN (401) for every call of the account's keys; PHONE_NUMBER_BANNED at login."""
        with self.store.lock:
            self._account(phone).banned = banned

    def flood(self, target: str, calls: int, seconds: int, method: str | None = None) -> None:
        """The next `calls` calls of the account (`target` a phone, or "all") answer FLOOD_WAIT_`seconds` (420);
        only of `method` (a TL name such as "users.getUsers") if given. help.getConfig is never flooded."""
        phone = None if target == ALL else self._account(target).phone
        with self.store.lock:
            self.store.floods.append(FloodRule(phone, calls, seconds, method))

    @property
    def refuse_duplicates(self) -> bool:
        """When on, a second live connection of an auth key gets AUTH_KEY_DUPLICATED (406) for each of its calls
        (and is recorded in `duplicates`), as Telegram answers a session used from two places at once."""
        with self.store.lock:
            return self.store.refuse_duplicates

    @refuse_duplicates.setter
    def refuse_duplicates(self, on: bool) -> None:
        with self.store.lock:
            self.store.refuse_duplicates = on

    def drop_all(self) -> None:
        """Close every connection (clients see the server go away and reconnect)."""
        self._close(lambda _connection: True)

    def stall(self, on: bool = True) -> None:
        """Keep accepting and reading, and answer nothing (a hung server); `stall(False)` answers again."""
        with self.store.lock:
            self.store.stalled = on

    def _close(self, which: Callable[[Connection], bool], then: Callable[[], None] | None = None) -> None:
        """Close the connections `which` picks, and run `then`, in the server's loop under the lock; returns
        when done (the connections are closed on our side and no longer live)."""

        async def close() -> None:
            with self.store.lock:
                for connection in [c for c in self._open if which(c)]:
                    connection.close()
                if then is not None:
                    then()

        self._run(close())

    # --- observations -----------------------------------------------------------------------------------------

    def calls(self, phone: str | None = None, method: str | None = None) -> list[Call]:
        """Every RPC received (wrappers removed), in order; only the account's / the method's if given."""
        with self.store.lock:
            found = list(self.store.calls)
        if phone is not None:
            found = [c for c in found if c.phone == normalize_phone(phone)]
        if method is not None:
            found = [c for c in found if c.method == method]
        return found

    def clear_calls(self) -> None:
        with self.store.lock:
            self.store.calls.clear()

    def live_connections(self, phone: str) -> int:
        """Open connections whose auth key is logged in as the account."""
        with self.store.lock:
            return len(self.store.connections_of(self._account(phone).phone))

    def peak_connections(self, phone: str) -> int:
        """The most live connections the account ever had at once (a test asserts 1: it never ran twice)."""
        with self.store.lock:
            return self.store.peak.get(self._account(phone).phone, 0)

    def open_connections(self) -> int:
        """Every open TCP connection, logged in or not."""
        return len(self._open)

    @property
    def duplicates(self) -> list[str]:
        """Phones (or "key:ID" before a login) whose second live connection was refused."""
        with self.store.lock:
            return list(self.store.duplicates)

    def init_connection(self, phone: str) -> dict[str, Any] | None:
        """The device fields (device_model, app_version, lang_pack, ...) of the latest initConnection sent with
        an auth key logged in as the account."""
        with self.store.lock:
            user_id = self._account(phone).user_id
            for record in reversed(list(self.store.keys.values())):
                if record.user_id == user_id and record.init_connection is not None:
                    return dict(record.init_connection)
        return None
