"""An account's 2FA password on file (`Account.password_enc`, a Fernet token; never shown, logged or sent in
clear) as the `2fa` operation uses it: the current password when the operator gives none, and the new one kept
once Telegram accepted the change. It comes from an imported session's sidecar (`backend.session_sources`)."""

from __future__ import annotations

import json
from typing import Any

from celery_app.operations import OperationName, OperationStatus
from database.models import Account, AccountOperation


def with_stored_password(name: str, params: dict[str, Any], account: Account) -> dict[str, Any]:
    """The wire parameters for one account: a `2fa` given no current password gets the one on file (as the
    token it is stored as; only the worker decrypts it). The operation's row keeps the parameters as given."""
    if name != OperationName.TWO_FA or params.get("current_password_enc") or not account.password_enc:
        return params
    return {**params, "current_password_enc": account.password_enc}


def keep_new_password(account: Account | None, row: AccountOperation, status: str, result: dict[str, Any]) -> None:
    """After a `2fa` that changed the password: the new one (already a token, encrypted when it was asked for)
    is the account's password on file."""
    if account is None or row.name != OperationName.TWO_FA or status != OperationStatus.DONE:
        return
    if not result.get("changed"):
        return
    try:
        new = json.loads(row.params or "{}").get("new_password_enc")
    except (ValueError, AttributeError):
        return
    if isinstance(new, str) and new:
        account.password_enc = new
