"""The domain errors every front end (CLI, bot) shows as one clear line: refusals and not-founds, not crashes."""

from __future__ import annotations

from backend.accounts_service import AccountError
from backend.dispatch import WorkerDidNotAnswer
from backend.fleet import InvalidInput
from database.operations import (
    AccountExists,
    AccountNotFound,
    WorkerExists,
    WorkerHasAccounts,
    WorkerNotFound,
    WorkerStillOnline,
)

DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    WorkerNotFound,
    WorkerExists,
    WorkerStillOnline,
    WorkerHasAccounts,
    InvalidInput,
    AccountNotFound,
    AccountExists,
    AccountError,
    WorkerDidNotAnswer,
)
