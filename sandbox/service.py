"""What the sandbox can be asked over its control channel (`run_cli.py sandbox …`): one function a command.

An account is named by its Telegram user id (what the fleet's `accounts show` lists), its @username or its phone
number. Answers are plain data (the CLI renders them); bad input is a `SandboxRefusal` and changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox.control import Handler, SandboxRefusal
from sandbox.mtproto import Account, MTProtoServer
from sandbox.mtproto.store import normalize_phone
from sandbox.people import PEOPLE, TESTER, People, person

MESSAGE_MAX = 4096
CHAT_LIMIT_MAX = 500


class SandboxService:
    def __init__(self, server: MTProtoServer, people: People) -> None:
        self.server = server
        self.people = people
        self.started = time.time()

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "add_account": self.add_account,
            "code": self.code,
            "send": self.send,
            "chat": self.chat,
            "flood": self.flood,
            "revoke": self.revoke,
            "ban": self.ban,
        }

    # --- finding accounts -----------------------------------------------------------------------------------

    def _find(self, who: object) -> Account:
        store = self.server.store
        with store.lock:
            found: Account | None = None
            if isinstance(who, int) and not isinstance(who, bool):
                found = store.account_by_id(who)
            elif isinstance(who, str) and who.strip():
                text = who.strip()
                if text.startswith("@"):
                    wanted = text[1:].lower()
                    found = next((a for a in store.accounts.values() if (a.username or "").lower() == wanted), None)
                elif text.lstrip("+").isdigit() and text.startswith("+"):
                    found = store.accounts.get(normalize_phone(text))
                elif text.isdigit():
                    found = store.account_by_id(int(text))
        if found is None:
            raise SandboxRefusal("unknown_account", f"the sandbox has no account {who!r}")
        return found

    def _name(self, user_id: int) -> str:
        with self.server.store.lock:
            account = self.server.store.account_by_id(user_id)
        if account is None:
            return f"user {user_id}"
        return f"@{account.username}" if account.username else f"user {user_id}"

    # --- commands -------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        people = {normalize_phone(p.phone) for p in PEOPLE}
        with self.server.store.lock:
            fleet = [phone for phone in self.server.store.accounts if phone not in people]
            messages = sum(len(a.messages) for a in self.server.store.accounts.values())
        return {
            "address": f"{self.server.host}:{self.server.port}",
            "dc": self.server.dc_setting,
            "uptime": round(time.time() - self.started, 1),
            "accounts": len(fleet),
            "connected": sum(1 for phone in fleet if self.server.live_connections(phone) > 0),
            "connections": self.server.open_connections(),
            "messages": messages,
            "people": [{"name": p.name, "first_name": p.first_name, "scripted": p.scripted} for p in PEOPLE],
            "chatter_every": self.people.chatter_every,
            "people_wrote": self.people.written,
        }

    def add_account(self, phone: str, first_name: str = "Demo", username: str | None = None) -> dict[str, Any]:
        """A new account of the sandbox's Telegram that can log in with the code this returns."""
        if not normalize_phone(phone):
            raise SandboxRefusal("bad_phone", f"{phone!r} is not a phone number")
        with self.server.store.lock:
            if normalize_phone(phone) in self.server.store.accounts:
                raise SandboxRefusal("account_exists", "the sandbox has that account already")
        account = self.server.add_account(phone, first_name=first_name, username=username)
        return {"user_id": account.user_id, "code": account.code}

    def code(self, who: object) -> str:
        """The login code of the account (on Telegram it arrives in the app; here the sandbox tells it)."""
        return self._find(who).code

    def send(self, to: object, text: str, as_name: str = TESTER.name) -> dict[str, Any]:
        """A message from one of the sandbox's people to the account, pushed to its live connections."""
        sender = person(as_name)
        if sender is None:
            names = ", ".join(p.name for p in PEOPLE)
            raise SandboxRefusal("unknown_person", f"the sandbox has no person {as_name!r} (it has {names})")
        if not isinstance(text, str) or not text.strip():
            raise SandboxRefusal("empty_text", "the message is empty")
        if len(text) > MESSAGE_MAX:
            raise SandboxRefusal("text_too_long", f"the message is longer than {MESSAGE_MAX} characters")
        recipient = self._find(to)
        if recipient.phone == normalize_phone(sender.phone):
            raise SandboxRefusal("to_self", "a person of the sandbox cannot write to themself here")
        pushed = self.server.deliver(recipient.phone, text, sender=sender.phone)
        return {"to": self._name(recipient.user_id), "as": sender.name, "pushed_to": pushed}

    def chat(self, who: object, with_name: str | None = None, limit: int = 50) -> dict[str, Any]:
        """The account's private chats as the sandbox sees them, oldest first: the last `limit` messages, only
        those with `with_name` (a person or an @username) if given."""
        account = self._find(who)
        limit = max(1, min(int(limit), CHAT_LIMIT_MAX))
        peer_id: int | None = None
        if with_name is not None:
            named = person(with_name)
            peer_id = (
                self.server.account(named.phone).user_id if named else self._find("@" + with_name.lstrip("@")).user_id
            )
        with self.server.store.lock:
            messages = [m for m in account.messages if peer_id is None or m.peer_id == peer_id][-limit:]
        own = self._name(account.user_id)
        shown = []
        for message in messages:
            other = self._name(message.peer_id)
            shown.append(
                {
                    "id": message.id,
                    "date": message.date,
                    "from": own if message.out else other,
                    "to": other if message.out else own,
                    "out": message.out,
                    "text": message.text,
                    "read": message.read,
                    "edited": message.edited is not None,
                }
            )
        return {"account": own, "user_id": account.user_id, "messages": shown}

    def flood(self, who: object, seconds: int = 30, calls: int = 1, method: str | None = None) -> dict[str, Any]:
        """The account's next `calls` requests answer FLOOD_WAIT_`seconds` (of `method` only if given)."""
        if not 1 <= int(seconds) <= 86400 or not 1 <= int(calls) <= 10000:
            raise SandboxRefusal("bad_flood", "seconds must be 1-86400 and calls 1-10000")
        account = self._find(who)
        self.server.flood(account.phone, int(calls), int(seconds), method)
        return {"account": self._name(account.user_id), "seconds": int(seconds), "calls": int(calls)}

    def revoke(self, who: object) -> dict[str, Any]:
        """Every session of the account ends (AUTH_KEY_UNREGISTERED from now on), as "terminate all sessions"."""
        account = self._find(who)
        self.server.revoke(account.phone)
        return {"account": self._name(account.user_id)}

    def ban(self, who: object, banned: bool = True) -> dict[str, Any]:
        """Telegram bans the account (USER_DEACTIVATED_BAN on every call), or lifts the ban."""
        account = self._find(who)
        self.server.ban(account.phone, bool(banned))
        return {"account": self._name(account.user_id), "banned": bool(banned)}
