"""The domain errors every front end (CLI, bot) shows as one clear line: refusals and not-founds, not crashes.

The accounts service's own (`AccountError` and its kinds) are defined here; `DOMAIN_ERRORS` lists them with
those the database helpers, the fleet service and the dispatcher raise.
"""

from __future__ import annotations

from backend.admins_service import AdminError
from backend.audit_service import InvalidSince
from backend.dispatch import WorkerDidNotAnswer
from backend.fleet import InvalidInput
from backend.worker_logins import LoginError as WorkerLoginError
from common.errors import FleetError
from database.errors import (
    AccountExists,
    AccountNotFound,
    AppError,
    WorkerExists,
    WorkerHasAccounts,
    WorkerKeyNotPending,
    WorkerNotFound,
    WorkerStillOnline,
)
from database.proxies import ProxyError


class AccountError(FleetError):
    """A refused or failed account action: the message in English, `code` and `values` for the bots."""


class WorkerUnavailable(AccountError):
    """The worker is offline (`code` worker_offline) or deactivated (worker_deactivated)."""


class LoginError(AccountError):
    def __init__(self, message: str, code: str = "error", retry: bool = False, **values: object) -> None:
        super().__init__(message, code, **values)
        self.retry = retry


DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    WorkerNotFound,
    WorkerKeyNotPending,
    WorkerExists,
    WorkerStillOnline,
    WorkerHasAccounts,
    InvalidInput,
    AccountNotFound,
    AccountExists,
    AccountError,
    AppError,
    WorkerDidNotAnswer,
    ProxyError,
    AdminError,
    InvalidSince,
    WorkerLoginError,
)
