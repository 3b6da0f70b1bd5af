"""Callback data of the board bot's buttons: short prefixes, Enum actions, opaque public ids (64 bytes at most)."""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData


class InviteAction(enum.StrEnum):
    ACCEPT = "a"
    DECLINE = "d"
    REPORT = "r"


class ChatAction(enum.StrEnum):
    SEND = "s"  # deliver the pending message `token` into the chat
    END = "e"
    BLOCK = "b"
    REPORT = "r"


class InviteButton(CallbackData, prefix="bi"):
    action: InviteAction
    id: str  # the invitation's public id


class ChatButton(CallbackData, prefix="bc"):
    action: ChatAction
    id: str  # the chat's public id
    token: str = ""  # SEND: which pending message
