"""The fleet's not-founds and refusals raised by the database helpers (`FleetError`s: a code, its parameters
and an English message), which every front end shows as one clear line."""

from __future__ import annotations

from common.errors import FleetError


class WorkerNotFound(FleetError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} not found", "worker_not_found", name=name)
        self.name = name


class WorkerExists(FleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} already exists", "worker_exists", name=name)
        self.name = name


class WorkerStillOnline(FleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"worker {name!r} is online; stop it before removing it", "worker_still_online", name=name)
        self.name = name


class WorkerHasAccounts(FleetError):
    def __init__(self, name: str, count: int) -> None:
        super().__init__(
            f"worker {name!r} still has {count} account(s); move or remove them first",
            "worker_has_accounts",
            name=name,
            count=count,
        )
        self.name = name


class WorkerKeyNotPending(FleetError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"worker {name!r} presents no new key to trust (its key is the pinned one)",
            "worker_key_not_pending",
            name=name,
        )
        self.name = name


class AccountNotFound(FleetError, LookupError):
    def __init__(self, account_id: int | str) -> None:
        super().__init__(f"account {account_id} not found", "account_not_found", id=account_id)
        self.account_id = account_id


class AccountExists(FleetError):
    def __init__(self, masked_phone: str, account_id: int) -> None:
        super().__init__(
            f"an account with phone {masked_phone} already exists (id {account_id})",
            "account_exists",
            id=account_id,
            phone=masked_phone,
        )
        self.account_id = account_id


class AppError(FleetError):
    """A refusal about the pool of API apps (`database.apps`); each kind below has its own code."""


class AppNotFound(AppError, LookupError):
    def __init__(self, app_id: int) -> None:
        super().__init__(f"app {app_id} not found", "app_not_found", id=app_id)


class AppNotInPool(AppError, LookupError):
    def __init__(self, api_id: int) -> None:
        super().__init__(
            f"API ID {api_id} is not in the app pool: give its API hash too, or add it with `run_cli.py apps add`",
            "app_not_in_pool",
            api_id=api_id,
        )


class AppExists(AppError):
    def __init__(self, api_id: int, app_id: int) -> None:
        super().__init__(
            f"API ID {api_id} is in the pool already (app {app_id})", "app_exists", api_id=api_id, id=app_id
        )


class AppInUse(AppError):
    def __init__(self, app_id: int, count: int) -> None:
        super().__init__(
            f"app {app_id} still carries {count} account(s); remove them first",
            "app_in_use",
            id=app_id,
            count=count,
        )


class AppFull(AppError):
    def __init__(self, api_id: int, cap: int) -> None:
        super().__init__(
            f"API ID {api_id} carries as many accounts as its cap allows ({cap})", "app_full", api_id=api_id, cap=cap
        )


class AppHashMismatch(AppError):
    def __init__(self, api_id: int) -> None:
        super().__init__(
            f"the API hash given is not the one the pool holds for API ID {api_id}", "app_hash_mismatch", api_id=api_id
        )


class AppPoolEmpty(AppError):
    def __init__(self) -> None:
        super().__init__(
            "no API app in the pool: add one with `run_cli.py apps add API_ID`, or give an API ID and hash",
            "app_pool_empty",
        )


class AppPoolExhausted(AppError):
    def __init__(self, apps: int) -> None:
        super().__init__(
            f"every API app in the pool ({apps}) carries as many accounts as its cap allows: add an app or raise a cap",
            "app_pool_exhausted",
            count=apps,
        )
