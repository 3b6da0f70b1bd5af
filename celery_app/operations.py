"""Account operations on the wire: their names, where one stands, and what a `check` concludes.

An operation is run by the worker holding the account (`fleet.account.operate`); it writes where it stands
into `keys.operation(id)` and the control plane records the outcome. Results are small JSON objects; nothing
secret is ever in one (a changed 2FA password is reported as "changed", never shown).
"""

from __future__ import annotations

import enum
from typing import Any


class OperationName(enum.StrEnum):
    CHECK = "check"
    SESSIONS = "sessions"
    TERMINATE_OTHERS = "terminate-others"
    TWO_FA = "2fa"
    PROFILE = "profile"


class OperationStatus(enum.StrEnum):
    QUEUED = "queued"  # recorded and sent; no worker has picked it up yet
    RUNNING = "running"
    FLOOD_WAIT = "flood_wait"  # Telegram asked to wait; it resumes by itself at `until`
    DONE = "done"
    FAILED = "failed"  # a clear error (Telegram's, or bad input); nothing was changed by it
    WORKER_LOST = "worker_lost"  # its worker went away and the account runs nowhere else to re-run it


FINAL_STATUSES = frozenset({OperationStatus.DONE, OperationStatus.FAILED, OperationStatus.WORKER_LOST})


class Verdict(enum.StrEnum):
    """What `check` concludes about an account, from best to worst."""

    OK = "ok"
    SPAM_LIMITED = "limited"  # @SpamBot reports limits on the account
    RESTRICTED = "restricted"  # Telegram restricts the account (restriction_reason)
    UNAUTHORIZED = "unauthorized"  # the session is no longer authorized
    BANNED = "banned"  # deleted, deactivated or banned


_SEVERITY = {verdict: rank for rank, verdict in enumerate(Verdict)}


def severity(verdict: str | None) -> int:
    """How bad a verdict is (higher is worse); an unknown or missing verdict ranks as OK."""
    try:
        return _SEVERITY[Verdict(verdict)] if verdict else 0
    except ValueError:
        return 0


def got_worse(previous: str | None, current: str | None) -> bool:
    return previous is not None and severity(current) > severity(previous)


def verdict_of(report: dict[str, Any]) -> Verdict:
    """The verdict of a `check` report (the worker's result object)."""
    if report.get("banned") or report.get("deleted"):
        return Verdict.BANNED
    if not report.get("authorized", False):
        return Verdict.UNAUTHORIZED
    if report.get("restricted"):
        return Verdict.RESTRICTED
    if report.get("spam") == "limited":
        return Verdict.SPAM_LIMITED
    return Verdict.OK
