"""The fake Telegram's updates: event handlers and incoming messages (see `fake_telegram`)."""

from __future__ import annotations


class EventsMixin:
    """Mixed into `FakeClient`."""
