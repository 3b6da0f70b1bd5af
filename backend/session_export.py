"""Exporting accounts' sessions: each chosen account's stored session (a Telethon StringSession, decrypted with
SECRET_KEY's box) written in one of the portable formats of `common.session_formats`, with a JSON sidecar beside
it that the import reads back (phone, API pair, device identity, proxy, 2FA password when known), and an
`account.exported` event naming who exported it and in which format.

The files are live credentials: they are written into a private staging folder first, made 0600 (folders 0700)
and only then moved into place, so no other user ever sees one readable, and an existing file is replaced only
when asked (`force`). An account that cannot be exported (no session; a format that needs the Telegram user id
the fleet does not know yet) is reported as skipped with a coded reason, never a crash. Nothing here prints,
logs a secret or talks to Telegram: the CLI (`backend.cli.accounts_export`) and the bot are thin adapters.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.errors import AccountError
from common.crypto import SecretBox, SecretError
from common.details import Detail, detail, free
from common.sessions import parse_string_session
from common.validation import InvalidValue
from database import workers as workers_db
from database.accounts import device_of
from database.audit import audited, named
from database.events import NewEvent, account_subject, record_events
from database.models import Account, FleetEventKind

if TYPE_CHECKING:
    from common.session_formats import PortableSession, SessionFormat

# By `SessionFormat` value: the codecs (`common.session_formats`; for tdata, opentele and Telethon) are imported
# only when an export first needs them.
# Pyrogram's storage and Telegram Desktop's both hold the account's user id (without it Pyrogram starts a new
# login); the fleet learns it when the account first runs or is checked.
NEEDS_USER_ID = frozenset({"pyrogram-string", "pyrogram-file", "tdata"})
SUFFIXES = {
    "telethon-string": ".txt",
    "pyrogram-string": ".txt",
    "telethon-file": ".session",
    "pyrogram-file": ".session",
    "tdata": "",  # a folder
}
SIDECAR_SUFFIX = ".json"
_IDS_PER_QUERY = 500


@dataclass(frozen=True)
class ExportResult:
    """One account's outcome: the paths written (the session's file or folder, then its sidecar), or why it was
    skipped (a code the bots render; its English text is what the CLI prints)."""

    account_id: int
    phone_masked: str
    written: tuple[Path, ...] = ()
    skipped: Detail | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.account_id,
            "phone": self.phone_masked,
            "status": "written" if self.ok else "skipped",
            "files": [str(path) for path in self.written],
        }
        if self.skipped is not None:
            document["reason"] = self.skipped.text
            document["reason_code"] = self.skipped.to_json()
        return document


@dataclass(frozen=True)
class ExportedFile:
    """One account's export in memory (for the bot to send): the session as one document (a `.txt` for a string,
    the file itself, a `.zip` of a `tdata` folder) and its sidecar."""

    name: str
    content: bytes
    sidecar_name: str
    sidecar: bytes


def session_format(value: str) -> SessionFormat:
    """The format named `value` (`SessionFormat`'s values); ValueError for another name."""
    from common.session_formats import SessionFormat

    return SessionFormat(value)


def base_name(account_id: int) -> str:
    """The name an account's files share: `account-7.session` and `account-7.json` (no phone in a file name)."""
    return f"account-{account_id}"


def session_path(out: Path, account_id: int, fmt: str) -> Path:
    return out / f"{base_name(account_id)}{SUFFIXES[fmt]}"


def sidecar_path(out: Path, account_id: int) -> Path:
    return out / f"{base_name(account_id)}{SIDECAR_SUFFIX}"


def sidecar_of(
    account: Account,
    phone: str,
    api_hash: str,
    proxy: str | None,
    fmt: SessionFormat,
    password: str | None = None,
) -> dict[str, Any]:
    """What the import reads back, under both of the common export format's names for the API pair and the
    device (`backend.cli.accounts_import`, `common.devices.identity_fields`); the 2FA password as `twoFA`."""
    device = device_of(account)
    document: dict[str, Any] = {
        "phone": phone,
        "api_id": account.api_id,
        "app_id": account.api_id,
        "api_hash": api_hash,
        "app_hash": api_hash,
        "device_model": device.device_model,
        "device": device.device_model,
        "system_version": device.system_version,
        "sdk": device.system_version,
        "app_version": device.app_version,
        "lang_code": device.lang_code,
        "system_lang_code": device.system_lang_code,
        "lang_pack": device.lang_pack,
        "format": fmt.value,
        "session_file": f"{base_name(account.id)}{SUFFIXES[fmt]}",
    }
    if account.tg_user_id is not None:
        document["user_id"] = account.tg_user_id
    if account.tg_username:
        document["username"] = account.tg_username
    if proxy:
        document["proxy"] = proxy
    if password:
        document["twoFA"] = password
    return document


# --- writing files privately ---------------------------------------------------------------------------------


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def _make_private(root: Path) -> None:
    """Every folder under `root` (itself too) 0700 and every file 0600, whatever the writer's umask made them."""
    if root.is_file():
        root.chmod(0o600)
        return
    root.chmod(0o700)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            (Path(folder) / name).chmod(0o700)
        for name in files:
            (Path(folder) / name).chmod(0o600)


def _clear(path: Path) -> None:
    """Remove what `force` replaces: a file, a link (never what it points to) or a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def existing_targets(out: Path, account_ids: Iterable[int], fmt: str) -> list[Path]:
    """The files an export of these accounts would replace."""
    found = []
    for account_id in account_ids:
        for path in (session_path(out, account_id, fmt), sidecar_path(out, account_id)):
            if path.exists() or path.is_symlink():
                found.append(path)
    return found


def refuse_replacing(out: Path, account_ids: Iterable[int], fmt: str) -> None:
    """AccountError `export_exists` if an export of these accounts would replace a file (checked before asking
    and again before writing: nothing is written then)."""
    clashes = existing_targets(out, account_ids, fmt)
    if clashes:
        raise AccountError(
            f"{len(clashes)} file(s) exist, e.g. {clashes[0]}: use --force to replace them",
            "export_exists",
            count=len(clashes),
            path=str(clashes[0]),
        )


def prepare_out(out: Path) -> Path:
    """The output folder, made (0700) if it does not exist; AccountError if it cannot be used."""
    try:
        if not out.exists():
            out.mkdir(parents=True, mode=0o700)
        if not out.is_dir():
            raise AccountError(f"{out} is not a folder", "export_out", path=str(out))
        probe = tempfile.mkdtemp(prefix=".export-", dir=out)
        os.rmdir(probe)
    except OSError as error:
        problem = error.strerror or str(error)
        raise AccountError(f"cannot write into {out}: {problem}", "export_out", path=str(out)) from None
    return out.resolve()


# --- the service ---------------------------------------------------------------------------------------------


class SessionExporter:
    """Choosing accounts, and writing their sessions out (`export`) or into memory (`export_one`)."""

    def __init__(self, sessions: sessionmaker[Session], box: Callable[[], SecretBox]) -> None:
        self.sessions = sessions
        self._box = box

    def select(self, account_ids: Iterable[int] = (), worker: str | None = None) -> list[int]:
        """The ids given (every one must exist), else a worker's accounts, else every account; in id order."""
        ids = sorted(set(account_ids))
        with self.sessions() as session:
            if ids:
                known: set[int] = set()
                for start in range(0, len(ids), _IDS_PER_QUERY):
                    chunk = ids[start : start + _IDS_PER_QUERY]
                    known |= set(session.scalars(select(Account.id).where(Account.id.in_(chunk))))
                missing = [str(i) for i in ids if i not in known]
                if missing:
                    listed = ", ".join(missing)
                    raise AccountError(f"no account with id {listed}", "accounts_not_found", ids=listed)
                return ids
            query = select(Account.id).order_by(Account.id)
            if worker is not None:
                query = query.where(Account.worker_id == workers_db.get_worker(session, worker).id)
            return list(session.scalars(query))

    @audited("account.export", named(("account", "account_ids")), params=("fmt", "out", "force"))
    def export(
        self,
        account_ids: Sequence[int],
        fmt: str,
        out: Path,
        *,
        actor: str,
        force: bool = False,
        each: Callable[[ExportResult], None] | None = None,
    ) -> list[ExportResult]:
        """Write each account's session and sidecar into `out`; `each` is called after every account. Refused
        as a whole (AccountError `export_exists`, nothing written) if a file would be replaced without `force`."""
        fmt = session_format(fmt)
        out = prepare_out(out)
        if not force:
            refuse_replacing(out, account_ids, fmt)
        results = []
        for start in range(0, len(account_ids), _IDS_PER_QUERY):
            for account in self._accounts(account_ids[start : start + _IDS_PER_QUERY]):
                result = self._export_account(account, fmt, out, actor, force)
                results.append(result)
                if each is not None:
                    each(result)
        return results

    @audited("account.export", named(("account", "account_id")), params=("fmt",))
    def export_one(self, account_id: int, fmt: str, *, actor: str) -> ExportedFile:
        """One account's export in memory, recorded like any other; AccountError `export_skipped` (with the
        reason) if it cannot be exported."""
        fmt = session_format(fmt)
        with tempfile.TemporaryDirectory(prefix="fleet-export-") as tmp:
            out = Path(tmp)
            accounts = self._accounts([account_id])
            if not accounts:
                raise AccountError(f"account {account_id} not found", "account_not_found", id=account_id)
            result = self._export_account(accounts[0], fmt, out, actor, force=False)
            if result.skipped is not None:
                raise AccountError(
                    f"account {account_id} was not exported: {result.skipped.text}",
                    "export_skipped",
                    id=account_id,
                    reason=result.skipped,
                )
            written, side = result.written
            if written.is_dir():
                name, content = f"{written.name}.zip", _zipped(written)
            else:
                name, content = written.name, written.read_bytes()
            return ExportedFile(name, content, side.name, side.read_bytes())

    # --- one account

    def _accounts(self, account_ids: Sequence[int]) -> list[Account]:
        wanted = list(dict.fromkeys(account_ids))
        with self.sessions() as session:
            rows = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(wanted)))}
            for account in rows.values():
                session.expunge(account)
        return [rows[i] for i in wanted if i in rows]

    def _export_account(self, account: Account, fmt: SessionFormat, out: Path, actor: str, force: bool) -> ExportResult:
        skipped = self._cannot_export(account, fmt)
        if skipped is not None:
            return ExportResult(account.id, account.phone_masked, skipped=skipped)
        try:
            item, sidecar = self._portable(account, fmt)
        except SecretError:
            return ExportResult(account.id, account.phone_masked, skipped=detail("secret_unreadable"))
        except InvalidValue as error:  # says what is wrong with the stored session, never what it holds
            return ExportResult(account.id, account.phone_masked, skipped=free(str(error)))
        try:
            written = _place(item, fmt, out, account, sidecar, force)
        except FileExistsError:
            return ExportResult(account.id, account.phone_masked, skipped=detail("export_exists_now"))
        except (OSError, InvalidValue) as error:
            cause = getattr(error, "strerror", None) or str(error)
            return ExportResult(account.id, account.phone_masked, skipped=detail("export_failed", cause=cause))
        with self.sessions.begin() as session:
            said = detail("exported_as", format=fmt.value)
            record_events(
                session, [NewEvent(FleetEventKind.ACCOUNT_EXPORTED, account_subject(account.id), said, actor)]
            )
        return ExportResult(account.id, account.phone_masked, written=written)

    @staticmethod
    def _cannot_export(account: Account, fmt: SessionFormat) -> Detail | None:
        if account.session_enc is None:
            return detail("no_session")
        if fmt in NEEDS_USER_ID and not account.tg_user_id:
            return detail("export_needs_user_id", format=fmt.value)
        return None

    def _portable(self, account: Account, fmt: SessionFormat) -> tuple[PortableSession, dict[str, Any]]:
        from common.session_formats import PortableSession

        box = self._box()
        assert account.session_enc is not None
        data = parse_string_session(box.decrypt(account.session_enc))
        item = PortableSession(session=data, user_id=account.tg_user_id, api_id=account.api_id)
        proxy = box.decrypt(account.proxy_enc) if account.proxy_enc else None
        password = box.decrypt(account.password_enc) if account.password_enc else None
        phone, api_hash = box.decrypt(account.phone_enc), box.decrypt(account.api_hash_enc)
        sidecar = sidecar_of(account, phone, api_hash, proxy, fmt, password)
        return item, sidecar


def _place(
    item: PortableSession, fmt: SessionFormat, out: Path, account: Account, sidecar: dict[str, Any], force: bool
) -> tuple[Path, Path]:
    """Write the session and its sidecar in a private staging folder inside `out`, then move both into place."""
    from common.session_formats import write_session

    target, side_target = session_path(out, account.id, fmt), sidecar_path(out, account.id)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))  # 0700
    try:
        staged = staging / target.name
        made = write_session(item, fmt, staged, api_id=account.api_id)  # a string format: a one-line text file
        if made != staged:  # the codec chose its own name: ours is the one promised
            made.rename(staged)
        staged_side = staging / side_target.name
        _write_private(staged_side, (json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        _make_private(staged)
        moves = ((staged, target), (staged_side, side_target))
        present = [d for _, d in moves if d.exists() or d.is_symlink()]
        if present and not force:  # appeared since the check before writing: left as they are
            raise FileExistsError(present[0])
        for source, destination in moves:
            if destination in present:
                _clear(destination)
            source.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, side_target


def _zipped(folder: Path) -> bytes:
    """A folder as a zip whose top entry is the folder itself (`account-7/key_datas`, …)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()
