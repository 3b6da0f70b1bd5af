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
