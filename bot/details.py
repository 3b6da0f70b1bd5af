"""Status details in the admin's language: the fixed texts our workers and backend report (an account's detail,
an alert's reason) map to catalogue texts; anything else (an error's own words) is shown as it came.

The details are English by design (the CLI and the logs show them as they are); the patterns below follow the
texts `worker/telethon_manager.py`, `backend/observed.py`, `backend/listener.py` and `backend/accounts_service.py`
set. A detail that no longer matches after a change there is merely shown in English again.
"""

from __future__ import annotations

import re
from html import escape

from bot.texts import t

# Whole details that are always the same words.
_FIXED = {
    "imported": "detail.imported",
    "logged in": "detail.logged_in",
    "stopped": "detail.stopped",
    "restarting": "detail.restarting",
    "restarted": "detail.restarted",
    "worker stopped": "detail.worker_stopped",
    "its lease was taken over by another worker": "detail.lease_taken",
    "lease held elsewhere": "detail.lease_elsewhere",
    "not running on this worker": "detail.not_running_here",
    "stopped (it was waiting to resume)": "detail.parked_stopped",
    "connecting": "detail.connecting",
    "queued": "detail.queued",
    "starting": "detail.starting",
    "already running on this worker": "detail.already_running",
    "the worker is shutting down": "detail.shutting_down",
    "the session is not authorized (revoked or logged out)": "detail.session_not_authorized",
    "not authorized": "detail.not_authorized",
    "the session was revoked or logged out (AUTH_KEY_UNREGISTERED)": "detail.auth_key_unregistered",
    "the session was revoked (SESSION_REVOKED)": "detail.session_revoked",
    "the session expired (SESSION_EXPIRED)": "detail.session_expired",
    "the authorization key is invalid (AUTH_KEY_INVALID)": "detail.auth_key_invalid",
    "AUTH_KEY_DUPLICATED: the session was used from two places at once; Telegram revoked it, log in again": (
        "detail.auth_key_duplicated"
    ),
    "the account is banned by Telegram (USER_DEACTIVATED_BAN)": "detail.user_banned",
    "the account was deleted or deactivated (USER_DEACTIVATED)": "detail.user_deactivated",
    "the phone number is banned (PHONE_NUMBER_BANNED)": "detail.phone_banned",
    "the server closed the connection": "detail.closed",
    "the server answered with an invalid packet": "detail.invalid_packet",
    "the connection was reset": "detail.reset",
    "the connection was aborted": "detail.aborted",
    "connection refused": "detail.refused",
    "the connection broke": "detail.broken",
    "timed out": "detail.timed_out",
    "a corrupted packet arrived": "detail.checksum",
    "a packet failed the security checks": "detail.security",
    "the server does not know this authorization key": "detail.unknown_key",
    "not assigned to a worker": "detail.unassigned",
    "no heartbeat yet": "detail.no_heartbeat_yet",
}

_WORKER = r"(?P<worker>[\w.\-]+)"
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# Details with values in them, tried in order; groups named in `_NESTED` are details themselves.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?P<detail>.+); retry (?P<attempt>[0-9]+) in (?P<delay>{_NUMBER}) s"), "detail.retry"),
    (re.compile(r"network: (?P<cause>.+)"), "detail.network"),
    (re.compile(r"could not start: (?P<cause>.+)"), "detail.could_not_start"),
    (re.compile(r"reconnecting \(attempt (?P<attempt>[0-9]+)\)"), "detail.reconnecting"),
    (re.compile(r"waiting for its turn to connect \((?P<rate>[0-9.e+]+) per second\)"), "detail.connect_turn"),
    (
        re.compile(
            r"waiting for its turn to reconnect \(attempt (?P<attempt>[0-9]+)\) \((?P<rate>[0-9.e+]+) per second\)"
        ),
        "detail.reconnect_turn",
    ),
    (re.compile(rf"Telegram asks to wait (?P<seconds>{_NUMBER}) s"), "detail.flood"),
    (re.compile(r"Telegram error (?P<code>-?[0-9]+)(?P<name>(?: [A-Z][A-Z0-9_]*)?)"), "detail.telegram_error"),
    (re.compile(rf"refused: the account is running on worker '{_WORKER}'"), "detail.running_elsewhere"),
    (re.compile(rf"waiting for worker '{_WORKER}' to let go of the account"), "detail.waiting_for_worker"),
    (
        re.compile(rf"worker {_WORKER} is offline \(silent for (?P<seconds>{_NUMBER}) s\)"),
        "detail.worker_offline_silent",
    ),
    (re.compile(rf"worker {_WORKER} is offline"), "detail.worker_offline"),
    (re.compile(rf"worker {_WORKER} silent for (?P<seconds>{_NUMBER}) s"), "detail.worker_silent"),
    (re.compile(rf"no report from worker {_WORKER} yet"), "detail.no_report"),
    (re.compile(rf"not running on worker {_WORKER}"), "detail.not_running_on"),
    (re.compile(rf"no heartbeat for (?P<seconds>{_NUMBER}) s"), "detail.no_heartbeat"),
    (re.compile(rf"no contact with Redis for (?P<seconds>{_NUMBER}) s"), "detail.no_redis"),
    (re.compile(r"restarted \(pid (?P<pid>[0-9]+)\)"), "detail.restarted_pid"),
]
_NESTED = ("detail", "cause")


def status_detail(lang: str, detail: str) -> str:
    """`detail` in `lang` when it is one of our own fixed texts, else as it is (plain text: escape it to show)."""
    detail = detail.strip()
    key = _FIXED.get(detail)
    if key is not None:
        return t(lang, key)
    for pattern, key in _PATTERNS:
        match = pattern.fullmatch(detail)
        if match is not None:
            values = {
                name: status_detail(lang, value) if name in _NESTED else value
                for name, value in match.groupdict().items()
            }
            return t(lang, key, **values)
    return detail


# Why an operation or a plugin change failed, as the worker or the service words it (English by design); the
# ones an admin meets most often have catalogue texts, others are shown as they came (or as a status detail).
_QUOTED_WORKER = r"'(?P<worker>[\w.\-]+)'"
_PROBLEMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"the username @(?P<username>\w*) is already taken.*"), "problem.username_taken"),
    (re.compile(r"the username @(?P<username>\w*) is not valid:.*"), "problem.username_invalid"),
    (re.compile(r"the current 2FA password is wrong"), "problem.wrong_password"),
    (
        re.compile(r"this account already has a 2FA password: give the current one to change it"),
        "problem.current_password_needed",
    ),
    (re.compile(r"the new 2FA password must not be empty"), "problem.password_empty"),
    (re.compile(r"this session is too new for Telegram to allow ending the others.*"), "problem.too_fresh_to_end"),
    (re.compile(r"this session is too new for Telegram to allow a 2FA change.*"), "problem.too_fresh_for_2fa"),
    (re.compile(r"the photo is not a JPEG or PNG image"), "problem.photo_not_image"),
    (re.compile(r"the photo is larger than (?P<mb>[0-9]+) MB"), "problem.photo_too_big"),
    (re.compile(r"the configuration is not valid JSON \((?P<detail>.*)\)"), "problem.config_not_json"),
    (re.compile(r"the configuration must be a JSON object"), "problem.config_not_object"),
    (
        re.compile(r"the configuration does not fit plugin '(?P<plugin>[^']+)': (?P<problems>.*)", re.DOTALL),
        "problem.config_unfit",
    ),
    (re.compile(r"worker lost: (?P<worker>\S+) went away before it finished"), "problem.worker_lost"),
    (re.compile(rf"worker {_QUOTED_WORKER} is offline"), "problem.worker_offline"),
    (re.compile(rf"worker {_QUOTED_WORKER} is deactivated.*"), "problem.worker_deactivated"),
    (re.compile(r"the account has no session: log in first"), "problem.no_session"),
    (re.compile(r"the account is not assigned to a worker"), "problem.no_worker"),
    (re.compile(rf"the account is running on worker {_QUOTED_WORKER}"), "problem.running_elsewhere"),
    (re.compile(rf"timed out after (?P<seconds>{_NUMBER}) s"), "problem.timed_out"),
]


def problem_text(lang: str, problem: str) -> str:
    """Why an operation or a plugin change failed, in `lang` where we have the words; safe HTML either way."""
    problem = problem.strip()
    for pattern, key in _PROBLEMS:
        match = pattern.fullmatch(problem)
        if match is not None:
            return t(lang, key, **{name: escape(value) for name, value in match.groupdict().items()})
    return escape(status_detail(lang, problem))
