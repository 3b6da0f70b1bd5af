"""One base for every refusal and failure the control plane reports to a person: `FleetError`.

An error carries a stable `code` (the admin bot's `err-<code>` text), the `values` that text shows, and its
English message (what the CLI and the logs print). `CODES` lists every code: raising an error with a code
not in it is a programming error, and a test checks that both of the admin bot's catalogues have a text for
each, so a new code without words fails the suite instead of showing English to a Russian admin. The board
bot's `BoardError` is a `FleetError` too (its codes are in the board's own catalogues).

A value is a string, a number or a `common.details.Detail` (a worker's coded reason), which the bots render
in the reader's language.
"""

from __future__ import annotations

from typing import Any

CODES: dict[str, str] = {
    # code: what it means (for maintainers; the texts are in the catalogues)
    "error": "a failure we have no words for: the message says it",
    # workers
    "worker_not_found": "no worker of that name",
    "worker_exists": "a worker of that name exists",
    "worker_still_online": "an online worker cannot be removed",
    "worker_has_accounts": "a worker with accounts cannot be removed",
    "worker_key_untrusted": "the worker presents a key other than its pinned one; it gets no work until trusted",
    "worker_key_not_pending": "the worker presents no new key to trust",
    "acl_not_permitted": "the control plane's Redis login may not run ACL commands (a worker's own login)",
    "acl_unsupported": "the Redis server cannot issue a worker's own login (Redis 7 or newer needed)",
    "worker_key_untrusted_start_later": "the worker's key is not trusted; the account can start once it is",
    "secret_key_mismatch": "this process's SECRET_KEY is not the one the rest of the fleet uses",
    "worker_offline": "the worker is offline",
    "worker_deactivated": "the worker is deactivated by an admin",
    "worker_offline_start_later": "the worker is offline; the account can be asked to start when it is back",
    "worker_deactivated_start_later": "the worker is deactivated; the account can start when it is back",
    "accounts_on_deactivated": "some of the accounts are on deactivated workers",
    "invalid_worker_name": "not a worker name",
    "invalid_address": "not a server address",
    "no_answer": "the worker did not answer in time",
    "worker_rejected_call": "the worker dropped the call's message without running it",
    "no_answer_will_retry": "the worker did not answer; the account stays marked to run",
    "no_answer_stays_stopped": "the worker did not answer; the account stays marked to stop",
    "no_answer_not_removed": "the worker did not answer; the account may still run, so it is kept",
    "start_refused": "the worker did not start the account",
    "restart_refused": "the worker did not restart the account",
    # accounts
    "account_not_found": "no account with that id",
    "accounts_not_found": "no accounts with those ids",
    "account_exists": "an account with that phone exists",
    "account_busy": "an account with that phone exists and is in use",
    "already_on_worker": "the account is on that worker already",
    "no_session": "the account has no session",
    "no_worker": "the account is not assigned to a worker",
    "no_accounts": "nothing matches",
    "export_out": "the export's output folder cannot be used",
    "export_exists": "files an export would write exist already",
    "export_skipped": "an account could not be exported (the reason says why)",
    "session_in_fleet": "the session is an account of the fleet already",
    # the pool of API apps
    "app_not_found": "no app with that id in the pool",
    "app_not_in_pool": "an API ID given alone that the pool does not hold",
    "app_exists": "the API ID is in the pool already",
    "app_in_use": "an app that accounts use cannot be removed",
    "app_full": "the API ID chosen is at its cap",
    "app_hash_mismatch": "an API hash that is not the pool's for that API ID",
    "app_pool_empty": "no app in the pool, and no API ID and hash given",
    "app_pool_exhausted": "every app in the pool is at its cap",
    # the pool of proxies
    "proxy_not_found": "no proxy with that id in the pool",
    "proxy_in_use": "a proxy that accounts use cannot be removed without --reassign",
    "proxy_full": "the proxy carries as many accounts as its cap allows",
    "proxy_dead": "a dead proxy cannot be chosen",
    "proxy_group_full": "no proxy of the group that is not dead has room",
    "proxy_group": "not a proxy group name",
    "proxy_no_worker": "no worker is online to check proxies",
    # input
    "invalid": "a value that cannot be accepted",
    "passcode": "a Telegram Desktop folder locked with a local passcode, and none or a wrong one given",
    "phone": "not a phone number",
    "phone_required": "an imported account needs its phone number",
    "phone_not_found": "an imported session file names no phone",
    "api_id": "not an API ID",
    "api_hash": "not an API hash",
    "login_code": "not a login code",
    "proxy": "not a proxy",
    "session": "not a usable session",
    "session_missing": "no session given",
    "session_unusable": "the worker cannot read the session",
    "session_bot": "a bot's session: the fleet runs user accounts",
    "session_unreadable": "an uploaded file is damaged or in no session format",
    "passcode_required": "a tdata folder is locked with a local passcode",
    "passcode_wrong": "the tdata's local passcode is wrong",
    "phones_count": "not one phone number for each account of an upload",
    "device": "not a device identity",
    # logins (the worker's codes: `worker.login`)
    "invalid_phone": "Telegram does not accept the phone number",
    "banned": "the phone number is banned",
    "invalid_code": "the login code is wrong",
    "code_expired": "the login code expired",
    "wrong_password": "the 2FA password is wrong",
    "api_id_invalid": "Telegram rejects the API ID / hash",
    "flood_wait": "Telegram asks to wait",
    "network": "the worker cannot reach Telegram",
    "unknown_login": "the login expired or was cancelled",
    "timeout": "the worker did not answer in time",
    "invalid_input": "the worker refused the input",
    # operations
    "invalid_params": "an operation's options are not valid",
    "nothing_to_change": "a profile change with nothing to change",
    "no_options": "an operation that takes no options was given some",
    "password_empty": "an empty new 2FA password",
    "photo_invalid": "not a usable photo",
    "photo_too_big": "a photo over the size limit",
    "unknown_operation": "no operation of that name",
    # plugins
    "invalid_config": "a plugin configuration that does not fit",
    "config_too_large": "a plugin configuration over the size limit",
    "config_not_json": "a plugin configuration that is not JSON",
    "config_not_object": "a plugin configuration that is not an object",
    "unknown_plugin": "no plugin of that name",
    "plugin_broken": "a plugin that cannot be loaded",
    "plugin_secret_not_stored": "*** given for a secret plugin value the account has none stored of",
    "plugin_secret_unreadable": "stored secret plugin configuration that this SECRET_KEY does not open",
    "plugin_secret_no_key": "secret plugin configuration in a process without SECRET_KEY",
    # admins and roles
    "admin_not_found": "no admin with that Telegram id",
    "admin_exists": "that Telegram id is an admin already",
    "admin_from_env": "an owner named by ADMIN_IDS (changed only there)",
    "invalid_role": "not one of the four roles",
    "invalid_tg_id": "not a Telegram user id",
    "invalid_since": "not a time span or a date",
}


class UnknownErrorCode(ValueError):
    """An error raised with a code that is not in `CODES`: a programming error."""


class FleetError(Exception):
    """A refused or failed action: `code` names it, `values` fill its text, the message is in English."""

    code: str = "error"

    def __init__(self, message: str, code: str | None = None, **values: Any) -> None:
        super().__init__(message)
        chosen = code or type(self).code
        if chosen not in CODES:
            raise UnknownErrorCode(chosen)
        self.code = chosen
        self.values: dict[str, Any] = values

    @property
    def message(self) -> str:
        return str(self)
