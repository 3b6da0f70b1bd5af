"""Account operations on the wire: their names, where one stands, and what a `check` concludes.

An operation is run by the worker holding the account (`fleet.account.operate`); it writes where it stands
into `keys.operation(worker, id)` and the control plane records the outcome. Results are small JSON objects; nothing
secret is ever in one (a changed 2FA password is reported as "changed", never shown).
"""

from __future__ import annotations

import enum
from typing import Any

from common.details import Detail


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


def describe_result(name: str, result: dict[str, Any]) -> str:
    """One line for people about an operation's result (the results table, the bot, the account card)."""
    if name == OperationName.CHECK:
        verdict = str(result.get("verdict") or verdict_of(result).value)
        parts = [verdict]
        if result.get("restriction"):
            parts.append(f"restricted: {str(result['restriction'])[:80]}")
        if result.get("authorized") and not result.get("banned"):
            spam = str(result.get("spam") or "unknown")
            reason = Detail.from_json(result.get("spam_reason")) if spam == "unknown" else None
            parts.append(f"spam: {spam}" + (f" ({reason.text})" if reason is not None else ""))
            others = result.get("other_sessions")
            if isinstance(others, int):
                parts.append(f"{others} other session{'s' if others != 1 else ''}")
            if result.get("premium"):
                parts.append("premium")
        return " · ".join(parts)
    if name == OperationName.SESSIONS:
        sessions = [s for s in result.get("sessions", []) if isinstance(s, dict)]
        others = [s for s in sessions if not s.get("current")]
        shown = ", ".join(f"{s.get('device') or '?'} ({s.get('app') or s.get('platform') or '?'})" for s in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        if not others:
            return "no other sessions"
        return f"{len(others)} other session{'s' if len(others) != 1 else ''}: {shown}{more}"
    if name == OperationName.TERMINATE_OTHERS:
        ended = int(result.get("terminated") or 0)
        return f"ended {ended} other session{'s' if ended != 1 else ''}" if ended else "no other sessions to end"
    if name == OperationName.TWO_FA:
        if result.get("changed"):
            return "password changed"
        return "password set" if result.get("has_password") else "no password"
    if name == OperationName.PROFILE:
        changed = [str(item) for item in result.get("changed", [])]
        return f"changed {', '.join(changed)}" if changed else "nothing to change"
    return ""


def image_kind(data: bytes) -> str | None:
    """ "jpeg" or "png" from the first bytes (what Telegram takes for a profile photo), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    return None
