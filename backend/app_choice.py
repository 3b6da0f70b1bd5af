"""Which API app an account gets: its own credentials, an app of the pool asked for by API ID, or — given none —
the pool's least loaded app under its cap (`database.apps`).

`AppRequest` is what a login or an import was given, validated; `choose` turns it into `Credentials` inside the
caller's transaction, so that the row the caller then writes (an account, or a login's claim) is checked by the
database against the app's cap. An API ID and hash that the pool holds count as that app (and its cap); an API ID
the pool does not hold stays the account's own, outside the pool.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend.errors import AccountError
from common.crypto import SecretBox
from common.validation import InvalidValue, validate_api_hash, validate_api_id
from database import apps as apps_db
from database.errors import AppHashMismatch
from database.models import Account

# How often a write refused at the cap is tried again on another app; each refusal means another writer took a
# place, so the pool fills and a later choice raises AppPoolExhausted long before this.
CHOICE_ATTEMPTS = 50


@dataclass(frozen=True)
class AppRequest:
    """The credentials a login or an import was given: both, an API ID alone (that app of the pool), or none."""

    api_id: int | None = None
    api_hash: str | None = None

    @classmethod
    def of(cls, api_id: object, api_hash: str | None) -> AppRequest:
        """Validated; None and "" mean not given."""
        given_id = api_id is not None and str(api_id).strip() != ""
        given_hash = api_hash is not None and api_hash.strip() != ""
        try:
            if not given_id:
                if given_hash:
                    raise AccountError("an API hash needs its API ID", "api_id")
                return cls()
            return cls(validate_api_id(api_id), validate_api_hash(api_hash) if given_hash else None)
        except InvalidValue as error:
            raise AccountError(str(error), error.code, problem=str(error)) from None


@dataclass(frozen=True)
class Credentials:
    """What the account will use: `app_id` is the pool's app (None: credentials of its own)."""

    api_id: int
    api_hash_enc: str
    app_id: int | None

    @classmethod
    def of_account(cls, account: Account) -> Credentials:
        return cls(account.api_id, account.api_hash_enc, account.app_id)

    def give(self, account: Account) -> None:
        account.api_id, account.api_hash_enc, account.app_id = self.api_id, self.api_hash_enc, self.app_id


def choose(session: Session, box: SecretBox, request: AppRequest, holding: int | None = None) -> Credentials:
    """The credentials for `request` (raises AppPoolEmpty, AppPoolExhausted, AppNotInPool, AppFull or
    AppHashMismatch); `holding` is the app the account has already (its place is its own, even at the cap).
    Forgets the claims of abandoned logins first, so they hold no place."""
    apps_db.forget_expired_claims(session)
    if request.api_id is None:
        app = apps_db.least_loaded(session)
        return Credentials(app.api_id, app.api_hash_enc, app.id)
    if request.api_hash is None:
        app = apps_db.app_with_room(session, request.api_id, holding)
        return Credentials(app.api_id, app.api_hash_enc, app.id)
    pooled = apps_db.find_app(session, request.api_id)
    if pooled is None:
        return Credentials(request.api_id, box.encrypt(request.api_hash), None)
    if not hmac.compare_digest(box.decrypt(pooled.api_hash_enc), request.api_hash):
        raise AppHashMismatch(request.api_id)
    return Credentials(apps_db.app_with_room(session, request.api_id, holding).api_id, pooled.api_hash_enc, pooled.id)
