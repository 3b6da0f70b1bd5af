"""Importing what `backend.session_sources` found: each session read in its format (`common.session_formats`), given the
phone, app credentials, device and proxy its sidecar says, and stored as a Telethon string by the accounts
service — one row per account (file, account, result) for the table the CLI prints. The benchmark
(`bench/import_formats.py`) runs this same path.

Credentials, per session: the sidecar's (`app_id`/`api_id`, `app_hash`/`api_hash`), else `--api-id`/
`--api-hash` (these first when one session is imported by itself, as for the phone), else the API ID the
session itself records (Pyrogram, tdata) — with Telegram Desktop's public hash for a tdata's; with none, the
accounts service gives the account an app of the pool. A 2FA password in the sidecar is kept, encrypted.

A sidecar's `phone` names its one account; a tdata holding several gives each one's in `"accounts":
[{"user_id": ..., "phone": ...}]` (or a top-level `user_id` names the one its `phone` is for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.cli.base import actor
from backend.session_sources import (
    Source,
    account_fields,
    credentials,
    load_sidecar,
    sidecar_password,
    sidecar_proxy,
)
from common.session_formats import PasscodeRequired, PortableSession, read_sessions
from common.validation import InvalidValue, mask_phone, normalize_phone

if TYPE_CHECKING:
    from backend.account_views import AccountView
    from backend.accounts_service import AccountService


@dataclass(frozen=True)
class Options:
    """What the operator gave for every session of one import."""

    worker: str
    api_id: str | None = None
    api_hash: str | None = None
    phone: str | None = None  # one import of one account only
    proxy: str | None = None
    start: bool = False
    fmt: str | None = None
    passcode: str | None = None
    batch: bool = True  # a folder or archive: a missing phone is explained per file


@dataclass
class Row:
    file: str
    account: str = "-"
    account_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.account_id is not None and not self.reason

    @property
    def result(self) -> str:
        if self.account_id is None:
            return "skipped"
        return f"imported #{self.account_id}" + (", not started" if self.reason else "")


def read_source(source: Source, options: Options) -> list[PortableSession]:
    """Every session in one source; InvalidValue (PasscodeRequired for a locked tdata) says why not."""
    if source.problem:
        raise InvalidValue(source.problem)
    target = source.text if source.text is not None else source.path
    assert target is not None
    return read_sessions(target, options.fmt, passcode=options.passcode)


def import_source(service: AccountService, source: Source, options: Options) -> list[Row]:
    """Read one source and import each account in it; whatever goes wrong is that row's reason (but a worker
    that does not exist ends the whole import)."""
    from backend.errors import DOMAIN_ERRORS, AccountError
    from database.errors import WorkerNotFound

    try:
        sessions = read_source(source, options)
        sidecar = load_sidecar(source.sidecar)
    except InvalidValue as error:
        reason = str(error)
        if isinstance(error, PasscodeRequired) and not options.passcode:
            reason += " with --passcode-from-stdin"
        return [Row(source.name, reason=reason)]
    rows = []
    for index, item in enumerate(sessions):
        name = source.name if len(sessions) == 1 else f"{source.name} [{index + 1}/{len(sessions)}]"
        fields = account_fields(sidecar, item, len(sessions))
        row = Row(name, _masked(fields.get("phone") or (source.phone_hint if len(sessions) == 1 else None)))
        try:
            view = import_session(service, source, item, fields, options, len(sessions))
        except WorkerNotFound:
            raise
        except (*DOMAIN_ERRORS, InvalidValue) as error:
            row.reason = str(error)
            rows.append(row)
            continue
        row.account, row.account_id = f"{view.phone_masked}", view.id
        if options.start:
            try:
                service.start(view.id, actor())
            except AccountError as error:
                row.reason = str(error)
        rows.append(row)
    return rows


def import_session(
    service: AccountService,
    source: Source,
    item: PortableSession,
    fields: Mapping[str, Any],
    options: Options,
    count: int,
) -> AccountView:
    """Store one session through the accounts service (as the Telethon string the fleet keeps)."""
    from backend.errors import AccountError
    from common.devices import identity_fields

    phone = (options.phone if count == 1 else None) or fields.get("phone")
    phone = phone or (source.phone_hint if count == 1 else None)
    api_id, api_hash = credentials(fields, item, options)
    try:
        return service.import_session(
            options.worker,
            api_id,
            api_hash,
            session_string=item.session.to_string(),
            phone=str(phone) if phone else None,
            proxy=options.proxy or sidecar_proxy(fields.get("proxy")),
            device=identity_fields(fields) or None,  # the device the session was used from; else one is chosen
            password=sidecar_password(fields),
            actor=actor(),
        )
    except AccountError as error:
        if error.code == "phone_required" and options.batch:
            raise AccountError(_no_phone(source, item, count), "phone_not_found") from None
        raise


def _masked(phone: object) -> str:
    try:
        return mask_phone(normalize_phone(str(phone))) if phone else "-"
    except InvalidValue:
        return "-"


def _no_phone(source: Source, item: PortableSession, count: int) -> str:
    where = source.sidecar.name if source.sidecar else "a sidecar .json"
    if count > 1 and item.user_id is None:
        return f"no phone: one of {count} sessions in one file; put each in a file named after its phone"
    if count > 1:
        return f'no phone for user {item.user_id}: add "accounts": [{{"user_id": ..., "phone": ...}}] to {where}'
    if source.path is not None and source.path.is_dir():
        return f'no phone: name the folder after it (79991234567/tdata) or add {where} with "phone"'
    return f'no phone: name the file after it (79991234567.session) or add {where} with "phone"'
