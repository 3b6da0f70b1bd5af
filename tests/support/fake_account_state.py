"""The fake Telegram's account state: what Telegram knows of each account, for the fake's account API
(`fake_account_api`) and for tests (`account_state(phone)`).

It lives in the fake's Redis as JSON under `fake:account:{phone}` when FAKE_TELEGRAM_REDIS is set (so it is
shared by every client and process), else in this process. It starts, at its first change, from the `account`
entry of the phone's script (FAKE_TELEGRAM_SCRIPT); once stored, the stored state wins over the script. Every
key is optional:

    {"+15550000001": {"account": {
        "sessions": 3,                 # other authorisations besides the fleet's own (default 0), or a list of
                                       # {"device_model", "platform", "system_version", "app_name", "app_version",
                                       #  "country", "region", "ip", "api_id", "date_created", "date_active"}
        "password": "old",             # the 2FA password (default: none); "hint": "its hint"
        "first_name": "Ann", "last_name": "Lee", "bio": "…", "username": "ann_lee",
                                       # default: "Test", the phone's last 4 digits, "", "user" + last 4 digits
        "photos": 0,                   # profile photos already set
        "spam": "free",                # @SpamBot's answer: "free" (default), "limited", "free_ru", "limited_ru",
                                       # "silent" (it never answers), or any other text (answered as it is)
        "spam_delay": 0.0,             # seconds before @SpamBot's answer arrives
        "restricted": "reason text",   # get_me() says restricted, with this text as the restriction reason
        "premium": true, "deleted": true,
        "taken": ["someone"],          # usernames other accounts hold (USERNAME_OCCUPIED)
        "fresh": true,                 # the fleet's session logged in an hour ago: too new to end others
                                       # (FRESH_RESET_…_FORBIDDEN)
        "flood": {"op_calls": 2, "seconds": 3}  # the next 2 account-API calls raise FloodWaitError(3)
    }}}

What Telegram saw is in the stored state, for tests (`account_state(phone)`): the profile fields, `photos`,
`password`/`hint` (the password kept as an SRP verifier once used: ask `fake_password.password_matches`),
`sessions` (the other authorisations that remain), `flood_calls` (how many flood answers are left), and `log`,
the names of the last calls that reached it (`UpdateProfileRequest`, `UpdatePasswordSettingsRequest`, …).
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import threading
from collections.abc import Callable
from typing import Any

STATE_PREFIX = "fake:account:"

_OTHER_DEVICES = [
    ("Pixel 7", "Android", "SDK 34", "Telegram Android", "10.14.5", "Germany", "Berlin"),
    ("iPhone 15 Pro", "iOS", "17.5.1", "Telegram iOS", "10.13.1", "Netherlands", "North Holland"),
    ("Desktop", "Windows", "Windows 11", "Telegram Desktop", "5.2.3 x64", "France", "Ile-de-France"),
    ("Chrome 126", "Web", "Linux", "Telegram Web A", "10.9.7 A", "Spain", "Madrid"),
]

_local: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def _key(phone: str) -> str:
    return f"{STATE_PREFIX}{phone}"


def _session_entry(phone: str, index: int, given: dict[str, Any] | None = None) -> dict[str, Any]:
    device, platform, system, app, version, country, region = _OTHER_DEVICES[index % len(_OTHER_DEVICES)]
    digest = hashlib.sha256(f"{phone}:{index}".encode()).digest()
    entry = {
        "hash": struct.unpack(">q", digest[:8])[0] or 1,
        "device_model": device,
        "platform": platform,
        "system_version": system,
        "app_name": app,
        "app_version": version,
        "api_id": 4 + index,
        "ip": f"198.51.100.{10 + index}",
        "country": country,
        "region": region,
        "date_created": 1_700_000_000 + index * 86_400,
        "date_active": 1_710_000_000 + index * 3_600,
    }
    entry.update(given or {})
    return entry


def initial_state(phone: str) -> dict[str, Any]:
    """The account as the phone's script describes it (see the module's docstring)."""
    from tests.support.fake_telegram import _script

    account = dict(_script(phone).get("account") or {})
    digits = phone.lstrip("+")
    sessions = account.get("sessions", 0)
    if isinstance(sessions, list):
        others = [_session_entry(phone, index, dict(given)) for index, given in enumerate(sessions)]
    else:
        others = [_session_entry(phone, index) for index in range(int(sessions))]
    flood = dict(account.get("flood") or {})
    return {
        "sessions": others,
        "password": account.get("password") or None,
        "hint": str(account.get("hint", "")),
        "first_name": str(account.get("first_name", "Test")),
        "last_name": str(account.get("last_name", digits[-4:])),
        "bio": str(account.get("bio", "")),
        "username": str(account.get("username", f"user{digits[-4:]}")),
        "photos": int(account.get("photos", 0)),
        "spam": str(account.get("spam", "free")),
        "spam_delay": float(account.get("spam_delay", 0.0)),
        "restricted": account.get("restricted") or None,
        "premium": bool(account.get("premium", False)),
        "deleted": bool(account.get("deleted", False)),
        "taken": [str(name) for name in account.get("taken", [])],
        "fresh": bool(account.get("fresh", False)),
        "flood_calls": int(flood.get("op_calls", 0)),
        "flood_seconds": int(flood.get("seconds", 0)),
        "spambot": [],  # the chat with @SpamBot: [{"id", "out", "text", "at"}], the last few
        "last_message_id": 0,
        "log": [],
    }


def account_state(phone: str) -> dict[str, Any]:
    """The account's Telegram-side state now (a copy): stored, or as the script describes it."""
    from tests.support.fake_telegram import _redis

    redis = _redis()
    if redis is not None:
        raw = redis.get(_key(phone))
        return json.loads(raw) if raw else initial_state(phone)
    with _lock:
        stored = _local.get(phone)
        return copy.deepcopy(stored) if stored is not None else initial_state(phone)


def reset_accounts() -> None:
    """Forget every account's state kept in this process (tests without the fake's Redis)."""
    with _lock:
        _local.clear()


def update_state(phone: str, change: Callable[[dict[str, Any]], Any]) -> Any:
    """Apply `change` to the account's state atomically (across processes with Redis) and store it."""
    from tests.support.fake_telegram import _redis

    redis = _redis()
    if redis is None:
        with _lock:
            state = copy.deepcopy(_local[phone]) if phone in _local else initial_state(phone)
            result = change(state)
            _local[phone] = state
            return result
    outcome: dict[str, Any] = {}

    def attempt(pipe: Any) -> None:
        raw = pipe.get(_key(phone))
        state = json.loads(raw) if raw else initial_state(phone)
        outcome["result"] = change(state)
        pipe.multi()
        pipe.set(_key(phone), json.dumps(state))

    redis.transaction(attempt, _key(phone))
    return outcome["result"]
