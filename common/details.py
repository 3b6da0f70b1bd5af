"""What workers and the backend report to people — an account's status detail, an event's reason, why an
operation or a plugin failed — as a stable code with parameters, set where it happens, and the English text
made from them (what the CLI and the logs show).

The bots render the code from their catalogues (`detail-<code>`, with the same parameters), so a reworded
English text never breaks a translation and nothing is translated back from prose. `ENGLISH` is the registry
of every code: a `Detail` with a code not in it is a programming error, and a test checks that both of the
admin bot's catalogues have a text for each.

A parameter is a string, a number, or a `Detail` itself (a retry wraps what failed, a network error its
cause); a number named `*_at` is a moment (epoch seconds), shown in local time by the English text (`moment`).
`text` is for things we have no words for: an error's own (already redacted) words, shown as they are.
On the wire a detail is `{"c": code, "p": {name: value}}` (`encode` / `decode`).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ENGLISH: dict[str, str] = {
    # what an account is doing, and why it stopped
    "imported": "imported",
    "logged_in": "logged in",
    "stopped": "stopped",
    "restarting": "restarting",
    "restarted": "restarted",
    "restarted_pid": "restarted (pid {pid})",
    "worker_stopped": "worker stopped",
    "lease_taken": "its lease was taken over by another worker",
    "lease_elsewhere": "lease held elsewhere",
    "not_running_here": "not running on this worker",
    "parked_stopped": "stopped (it was waiting to resume)",
    "connecting": "connecting",
    "reconnecting": "reconnecting (attempt {attempt})",
    "queued": "queued",
    "connect_turn": "waiting for its turn to connect ({rate:g} per second)",
    "reconnect_turn": "waiting for its turn to reconnect (attempt {attempt}) ({rate:g} per second)",
    "starting": "starting",
    "already_running": "already running on this worker",
    "shutting_down": "the worker is shutting down",
    "running_elsewhere": "refused: the account is running on worker '{worker}'",
    "lease_unconfirmed": "not started yet: no Redis replica acknowledged its lease in time (the start is retried)",
    "worker_full": "refused: worker '{worker}' runs as many accounts as it may ({limit}, WORKER_MAX_ACCOUNTS)",
    "account_elsewhere": "the account is running on worker '{worker}'",
    "account_not_ready": "the account's status on this worker is {status}",
    "account_not_ready_because": "the account's status on this worker is {status} ({cause})",
    "invalid_parameters": "invalid parameters: {problems}",
    "photo_not_base64": "invalid parameters: photo is not valid base64",
    "secret_unreadable": "cannot decrypt a secret: it is corrupted or was encrypted with another SECRET_KEY",
    "waiting_for_worker": "waiting for worker '{worker}' to let go of the account",
    "session_not_authorized": "the session is not authorized (revoked or logged out)",
    "not_authorized": "not authorized",
    "auth_key_unregistered": "the session was revoked or logged out (AUTH_KEY_UNREGISTERED)",
    "session_revoked": "the session was revoked (SESSION_REVOKED)",
    "session_expired": "the session expired (SESSION_EXPIRED)",
    "auth_key_invalid": "the authorization key is invalid (AUTH_KEY_INVALID)",
    "auth_key_duplicated": (
        "AUTH_KEY_DUPLICATED: the session was used from two places at once; Telegram revoked it, log in again"
    ),
    "user_banned": "the account is banned by Telegram (USER_DEACTIVATED_BAN)",
    "user_deactivated": "the account was deleted or deactivated (USER_DEACTIVATED)",
    "phone_banned": "the phone number is banned (PHONE_NUMBER_BANNED)",
    "flood": "Telegram asks to wait {seconds:.0f} s",
    "network": "network: {cause}",
    "retry": "{detail}; retry {attempt} in {delay:.0f} s",
    "could_not_start": "could not start: {cause}",
    "telegram_error": "Telegram error {code}{name}",
    "unknown_constructor": "the server sent a reply this client cannot read (unknown constructor: another API layer?)",
    "closed": "the server closed the connection",
    "invalid_packet": "the server answered with an invalid packet",
    "reset": "the connection was reset",
    "aborted": "the connection was aborted",
    "refused": "connection refused",
    "broken": "the connection broke",
    "timed_out": "timed out",
    "checksum": "a corrupted packet arrived",
    "security": "a packet failed the security checks",
    "unknown_key": "the server does not know this authorization key",
    # what the control plane says about an account or a worker
    "unassigned": "not assigned to a worker",
    "worker_offline": "worker {worker} is offline",
    "worker_offline_silent": "worker {worker} is offline (silent for {seconds:.0f} s)",
    "worker_silent": "worker {worker} silent for {seconds:.0f} s",
    "no_report": "no report from worker {worker} yet",
    "not_running_on": "not running on worker {worker}",
    "no_heartbeat_yet": "no heartbeat yet",
    "no_heartbeat": "no heartbeat for {seconds:.0f} s",
    "no_redis": "no contact with Redis for {seconds:.1f} s",
    "worker_host": "host {host}",
    "worker_address": "address {address}",
    "key": "key {fingerprint}",
    "key_changed": "key {presented} instead of the pinned {pinned}: no work until trusted",
    "on_worker": "on {worker}",
    "moved": "{before} -> {after}",
    "secrets_wiped": "secrets wiped",
    "exported_as": "session exported as {format}",
    "export_needs_user_id": (
        "{format} needs the account's Telegram user id, which the fleet learns when the account first runs: "
        "start or check it once"
    ),
    "export_exists_now": "its file appeared meanwhile; not replaced",
    "export_failed": "could not write it: {cause}",
    "status_change": "{status}: {cause}",
    "status_is": "{status}",
    # why an operation or a plugin change failed
    "username_taken": "the username @{username} is already taken",
    "username_for_sale": "the username @{username} is already taken (it can only be bought on fragment.com)",
    "first_name_refused": "Telegram refused the first name (it must not be empty)",
    "last_name_refused": "Telegram refused the last name",
    "bio_too_long": "the bio is too long for Telegram (70 characters without Premium)",
    "photo_dimensions": "Telegram refused the photo's dimensions: use a JPEG or PNG image of at least 160×160 pixels",
    "photo_too_small": "the photo is too small: use a JPEG or PNG image of at least 160×160 pixels",
    "photo_unprocessable": "Telegram could not process the photo: use a JPEG or PNG image of at least 160×160 pixels",
    "photo_format": "Telegram refused the photo's format: use a JPEG or PNG image of at least 160×160 pixels",
    "photo_refused": "Telegram refused the photo: use a JPEG or PNG image of at least 160×160 pixels",
    "photo_lost": "the photo did not reach Telegram; try again",
    "photo_damaged": "the photo did not reach Telegram intact; try again",
    "password_too_fresh": "the 2FA password was set too recently for Telegram to allow a change; try again {when}",
    "session_too_fresh": "this session is too new for Telegram to allow a 2FA change; try again {when}",
    "password_change_refused": "Telegram refused the new 2FA settings; try again",
    "password_settings_changed": "the 2FA settings changed meanwhile; try again",
    "password_changed_meanwhile": "the 2FA password changed meanwhile; try again",
    "recovery_email_unconfirmed": "Telegram asks to confirm a recovery email first",
    "password_needed": "Telegram asks for the account's 2FA password first",
    "session_not_found": "that session no longer exists",
    "telegram_refused": "Telegram refused the request ({name})",
    "telegram_refused_plain": "Telegram refused the request",
    "hint_is_password": "the hint must not be the password itself",
    "field_not_text": "the {field} must be text",
    "first_name_empty": "the first name must not be empty",
    "partly_changed": "{cause} ({changed} already changed)",
    "later": "later",
    "in_seconds": "in {seconds} s",
    "in_minutes": "in about {minutes} minutes",
    "in_hours": "in about {hours} hours",
    "username_invalid": (
        "the username @{username} is not valid: 5 to 32 letters, digits or underscores, starting with a letter"
    ),
    "wrong_password": "the current 2FA password is wrong",
    "current_password_needed": "this account already has a 2FA password: give the current one to change it",
    "password_empty": "the new 2FA password must not be empty",
    "too_fresh_to_end": (
        "this session is too new for Telegram to allow ending the others (it must be at least 24 hours old)"
    ),
    "too_fresh_to_end_until": "this session is too new to end the others: possible from {possible_at}",
    "spambot_not_found": "@SpamBot cannot be found on this Telegram server",
    "spambot_refused": "@SpamBot could not be asked: {cause}",
    "spambot_silent": "@SpamBot did not answer within {seconds:g} s",
    "photo_not_image": "the photo is not a JPEG or PNG image",
    "photo_too_big": "the photo is larger than {mb} MB",
    "worker_lost": "worker lost: {worker} went away before it finished",
    "worker_deactivated": "worker {worker!r} is deactivated; activate it or move the account",
    "op_worker_offline": "worker {worker!r} is offline",
    "no_session": "the account has no session: log in first",
    "no_worker": "the account is not assigned to a worker",
    "op_timed_out": "timed out after {seconds:g} s",
    "unknown_operation": "there is no operation named {name!r}",
    "operation_failed": "{operation}: {cause}",
    "operation_outcome": "{operation} {status}: {cause}",
    "operation_lost": "{operation} {cause}",
    "check_summary": "{summary}",
    "plugin_failed": "{plugin} failed: {cause}",
    "plugin_blocked_loop": "{plugin} blocked its event loop: {cause}",
    "plugin_unknown": "unknown plugin: worker {worker} does not have it",
    "plugin_not_importable": "it could not be imported",
    "plugin_config_invalid": "invalid configuration: {problems}",
    "plugin_secret_unopened": "its secret {field} does not open with this worker's key (sealed for another worker)",
    "plugin_setup_timeout": "setup did not finish within {seconds:g} s",
    "plugin_setup_failed": "setup failed: {cause}",
    "plugin_blocked": "blocked its event loop for {seconds:.1f} s",
    "plugin_still_blocked": "blocked its event loop for {seconds:.1f} s (still blocked)",
    "plugin_event": "{plugin}: {kind}: {text}",
    "plugin_name": "{plugin}",
    "verdict_worse": "{before} → {after}",
    # the pool of proxies (`database.proxies`, `backend.proxy_health`)
    "proxy_added": "{proxy} in group {group}",
    "proxy_removed": "{proxy}",
    "proxy_set": "proxy {old} -> {new}",
    "proxy_none": "none",
    "proxy_reassigned": "proxy #{removed} ({removed_proxy}) removed: moved to #{to} ({to_proxy})",
    "proxy_dead": "{failures} checks in a row failed ({error}); {accounts} account(s) behind it",
    "proxy_back": "checks pass again ({ms:.0f} ms)",
    "proxy_failover": "proxy #{dead} ({dead_proxy}) is dead: moved to #{to} ({to_proxy})",
    "proxy_no_spare": "no live proxy of group {group} has room: {accounts} account(s) stay behind it",
    "proxy_stuck": "proxy #{dead} ({dead_proxy}) is dead and group {group} has no live proxy with room: it stays",
    "probe_refused": "the proxy refused the connection",
    "probe_timed_out": "no answer in time",
    "probe_auth_failed": "the proxy refused the credentials",
    "probe_handshake": "the proxy hung up during its handshake (wrong credentials?)",
    "probe_proxy_refused": "the proxy could not reach the data centre",
    "probe_unreachable": "the proxy's address cannot be reached",
    "probe_bad_reply": "the answer through the proxy was not Telegram's",
    "probe_unreadable": "the proxy's URL cannot be read on the worker",
    "probe_error": "the check failed",
    # words we have none for: an error's own (redacted) text
    "text": "{text}",
}


class UnknownDetail(ValueError):
    """A code that is not in `ENGLISH`: a programming error (every code needs words in every catalogue)."""


@dataclass(frozen=True)
class Detail:
    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ENGLISH:
            raise UnknownDetail(self.code)

    @property
    def text(self) -> str:
        """The English text (what the CLI and the logs show)."""
        values = {name: _shown(name, value) for name, value in self.params.items()}
        try:
            return ENGLISH[self.code].format(**values)
        except (KeyError, IndexError, ValueError, TypeError):
            return self.code

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.code,
            "p": {name: value.to_json() if isinstance(value, Detail) else value for name, value in self.params.items()},
        }

    @classmethod
    def from_json(cls, raw: object) -> Detail | None:
        """The detail a JSON object describes; None for anything else (an older sender, a foreign code)."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("c"), str) or raw["c"] not in ENGLISH:
            return None
        params: dict[str, Any] = {}
        for name, value in (raw.get("p") or {}).items():
            if isinstance(value, Mapping):
                nested = cls.from_json(value)
                if nested is None:
                    return None
                params[str(name)] = nested
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                params[str(name)] = value
            else:
                return None
        return cls(raw["c"], params)

    def encode(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Detail | None:
        if not text:
            return None
        try:
            return cls.from_json(json.loads(text))
        except ValueError:
            return None


def is_moment(name: str, value: object) -> bool:
    """Whether a parameter is a moment: a number (epoch seconds) named `*_at`."""
    return name.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool)


def moment(epoch: float) -> str:
    """A moment in this host's local time, with its zone: "2025-03-01 14:05 CET"."""
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _shown(name: str, value: Any) -> Any:
    if isinstance(value, Detail):
        return value.text
    return moment(value) if is_moment(name, value) else value


def detail(code: str, /, **params: Any) -> Detail:
    return Detail(code, params)


def fitted(code: str, /, **values: Any) -> Detail:
    """`code` with those of `values` its text uses (for maps of codes that take different values)."""
    used = {name for _, name, _, _ in string.Formatter().parse(ENGLISH[code]) if name}
    return Detail(code, {name: value for name, value in values.items() if name in used})


def free(text: str) -> Detail:
    """Words we have no code for (an error's own, already made safe): shown as they are in every language."""
    return Detail("text", {"text": text})


def codes_in(value: Detail) -> set[str]:
    """Every code a detail uses, its nested ones too."""
    found = {value.code}
    for item in value.params.values():
        if isinstance(item, Detail):
            found |= codes_in(item)
    return found


def stored(code: str | None, text: str | None) -> Detail | None:
    """A detail as stored next to its English text: the code when there is one, else the text as it is (a row
    written before codes), else nothing."""
    return Detail.decode(code) or (free(text) if text else None)


def encoded(said: Detail | None) -> str:
    return said.encode() if said is not None else ""


def english(said: Detail | None) -> str:
    return said.text if said is not None else ""
