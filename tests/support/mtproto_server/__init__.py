"""A loopback Telegram (MTProto) server for tests: real Telethon clients connect, log in and fail to it.

Test support only: nothing under worker/ or backend/ imports it. See server.py for the control surface.
"""

from .crypto import ServerKey
from .server import ALL, MTProtoServer
from .store import Account, Call

__all__ = ["ALL", "Account", "Call", "MTProtoServer", "ServerKey"]
