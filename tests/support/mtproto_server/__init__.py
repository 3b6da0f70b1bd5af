"""A loopback Telegram (MTProto) server for tests: real Telethon clients connect, log in and fail to it.

Test support only: nothing under worker/ or backend/ imports it. See server.py for the control surface.
"""

from .crypto import ServerKey
from .messages_api import SPAM_FREE, SPAM_LIMITED
from .rpc import SPAMBOT
from .server import ALL, MTProtoServer
from .store import Account, Call, ProfilePhoto, StoredMessage

__all__ = [
    "ALL",
    "SPAMBOT",
    "SPAM_FREE",
    "SPAM_LIMITED",
    "Account",
    "Call",
    "MTProtoServer",
    "ProfilePhoto",
    "ServerKey",
    "StoredMessage",
]
