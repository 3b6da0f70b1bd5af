"""The fake Telegram's account API: the requests account operations send (see `fake_telegram`)."""

from __future__ import annotations


class AccountApiMixin:
    """Mixed into `FakeClient`."""
