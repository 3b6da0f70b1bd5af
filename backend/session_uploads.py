"""A session file an admin uploads to the bot, read and imported: a Telethon or Pyrogram `.session` file, a text
file of Telethon or Pyrogram session strings, or a `.zip` of any of these or of Telegram Desktop tdata folders
(with their sidecar `.json`s, as `backend.session_sources` finds them) — every account in it, each with its
own outcome. The bot's handler only downloads, asks and shows; the reading is `common.session_formats`', the
unpacking `backend.session_sources`' (the CLI's too), the storing `AccountService.import_session`'s.

Refusals of the upload as a whole are `AccountError`s with codes the bot renders: `session_unreadable` (damaged,
or in no session format), `session_bot`, `passcode_required` / `passcode_wrong` (a locked tdata: ask, then read
again), `phones_count`. Nothing is stored unless an account is read whole; one account's own refusal
(`session_in_fleet`, `account_exists`, ...) is its outcome and leaves the others alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import AccountError
from backend.session_sources import (
    Source,
    account_fields,
    credentials,
    load_sidecar,
    phone_in,
    saved_upload,
    sidecar_password,
    sidecar_proxy,
    sources_in,
    unpacked,
)
from common.devices import identity_fields
from common.errors import FleetError
from common.session_formats import PasscodeRequired, PortableSession, read_sessions
from common.sessions import MAX_SESSION_FILE_BYTES
from common.validation import InvalidValue

if TYPE_CHECKING:
    from backend.account_views import AccountView
    from backend.accounts_service import AccountService

MAX_ARCHIVE_BYTES = 20 * 1024 * 1024  # the most a bot may download; a zip's entries keep their own bounds


@dataclass(frozen=True)
class Found:
    """One account of an upload: where it is (the file, and its place among several), its session, the sidecar
    fields for it and the phone its file name or sidecar gives."""

    label: str
    item: PortableSession  # its repr never shows the key
    fields: dict[str, Any] = field(default_factory=dict)
    phone: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one account (or of one file of an archive that could not be read)."""

    label: str
    account: AccountView | None = None
    error: FleetError | None = None


@dataclass(frozen=True)
class Upload:
    found: list[Found]
    refused: list[Outcome]  # files of an archive that could not be read

    @property
    def unnamed(self) -> list[Found]:
        """The accounts whose phone the admin must give: those of several that nothing names."""
        return [f for f in self.found if f.phone is None] if len(self.found) > 1 else []


@dataclass(frozen=True)
class Given:
    """The wizard's API ID and hash (None: an app of the pool), as `session_sources.credentials` reads them."""

    api_id: object
    api_hash: str | None
    batch: bool


def max_bytes(name: str) -> int:
    return MAX_ARCHIVE_BYTES if Path(name).suffix.lower() == ".zip" else MAX_SESSION_FILE_BYTES


def read_upload(name: str, content: bytes, passcode: str | None = None) -> Upload:
    """Every account in an uploaded file named `name` (`passcode`: a tdata's local passcode)."""
    with saved_upload(name, content) as path, contextlib.ExitStack() as archives:
        if path.suffix == ".zip":
            try:
                sources = sources_in(archives.enter_context(unpacked(path)), archives, name, in_archive=True)
            except InvalidValue:
                raise _unreadable(name) from None
        else:
            sources = [Source(name, path, phone_hint=phone_in(Path(name).stem))]
        found: list[Found] = []
        refused: list[Outcome] = []
        for source in sources:
            try:
                found += _accounts_in(source, passcode)
            except PasscodeRequired:
                code = "passcode_wrong" if passcode else "passcode_required"
                raise AccountError(f"{source.name}: the tdata is locked with a local passcode", code) from None
            except InvalidValue as error:
                refused.append(Outcome(source.name, error=_refusal(error, source.name)))
    if not found:
        if len(refused) == 1 and refused[0].error is not None:
            raise refused[0].error
        raise _unreadable(name)
    return Upload(found, refused)


def _accounts_in(source: Source, passcode: str | None) -> list[Found]:
    if source.problem or source.path is None:
        raise InvalidValue(source.problem or "nothing to read")
    sessions = read_sessions(source.path, passcode=passcode)
    sidecar = load_sidecar(source.sidecar)
    accounts = []
    for index, item in enumerate(sessions):
        label = source.name if len(sessions) == 1 else f"{source.name} [{index + 1}/{len(sessions)}]"
        fields = account_fields(sidecar, item, len(sessions))
        phone = fields.get("phone") or (source.phone_hint if len(sessions) == 1 else None)
        accounts.append(Found(label, item, fields, str(phone) if phone else None))
    return accounts


def _unreadable(name: str) -> AccountError:
    return AccountError(f"{name}: not a session file the fleet can read", "session_unreadable", name=name)


def _refusal(error: InvalidValue, name: str) -> AccountError:
    if error.code == "session_bot":
        return AccountError(f"{name}: {error}", "session_bot", name=name)
    return _unreadable(name)


def phones_for(upload: Upload, wizard_phone: str | None, typed: Sequence[str]) -> list[str | None] | None:
    """The phone of each account: the wizard's for a lone one; for several, the one its name or sidecar gives,
    else the next the admin typed (None: they are still to be asked). `phones_count` if too few or many."""
    if len(upload.found) == 1:
        return [wizard_phone or upload.found[0].phone]
    wanted = len(upload.unnamed)
    if wanted and not typed:
        return None
    if len(typed) != wanted:
        raise AccountError(f"give {wanted} phone numbers, one a line", "phones_count", count=wanted)
    given = iter(typed)
    return [f.phone if f.phone is not None else next(given) for f in upload.found]


def import_upload(
    service: AccountService,
    upload: Upload,
    worker: str,
    phones: Sequence[str | None],
    api_id: object,
    api_hash: str | None,
    *,
    actor: str,
) -> list[Outcome]:
    """Import each account read (as the Telethon string the fleet keeps), each with its own outcome, then the
    files of an archive that could not be read. Credentials as the CLI gives them (`credentials`)."""
    given = Given(api_id, api_hash, batch=len(upload.found) > 1)
    outcomes = []
    for found, phone in zip(upload.found, phones, strict=True):
        try:
            outcomes.append(Outcome(found.label, account=_import_one(service, found, phone, worker, given, actor)))
        except FleetError as error:  # every refusal of the services is one
            outcomes.append(Outcome(found.label, error=error))
    return [*outcomes, *upload.refused]


def _import_one(
    service: AccountService, found: Found, phone: str | None, worker: str, given: Given, actor: str
) -> AccountView:
    api_id, api_hash = credentials(found.fields, found.item, given)
    try:
        proxy = sidecar_proxy(found.fields.get("proxy"))
    except InvalidValue as error:
        raise AccountError(str(error), "proxy", problem=str(error)) from None
    return service.import_session(
        worker,
        api_id,
        api_hash,
        session_string=found.item.session.to_string(),
        phone=phone,
        proxy=proxy,
        device=identity_fields(found.fields) or None,  # the device the session was used from; else one is chosen
        password=sidecar_password(found.fields),
        actor=actor,
    )
