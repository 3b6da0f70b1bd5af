"""The loopback Telegram (MTProto) server: real Telethon clients connect, log in, exchange messages (pushed
as updates to live connections, as Telegram does) and meet Telegram's refusals on demand.

The sandbox runs it as a product part (`run_sandbox.py`); the tests run it in-process or, for thousands of
clients, in a process of its own (`process.py`). Nothing of the real fleet imports it. See server.py for the
control surface.
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
