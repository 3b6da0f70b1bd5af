"""Telegram Desktop's `tdata` folder, read and written with `opentele-ng` (pure Python, no Qt, no network),
imported only here and only when a tdata is met: it brings Telethon along, which the CLI must not load
otherwise.

A tdata folder holds `key_datas` (the local key, encrypted with the local passcode if one is set, and the
list of accounts) and per account an encrypted map and MTP authorisation (user id, main DC, auth keys). It
records no server address (Telegram's for the DC is used: `model.dc_session`) and no API ID: every account
in it was authorised with Telegram Desktop's own app (`TDESKTOP_API_ID`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common.session_formats.model import TDESKTOP_API_ID, PasscodeRequired, PortableSession, dc_session
from common.validation import InvalidValue

KEY_FILES = ("key_datas", "key_data1", "key_data0")  # opentele tries the suffixes s, 1, 0 as TDesktop does
MAX_ACCOUNTS = 6  # Telegram Desktop's cap (kPremiumMaxAccounts)


def tdata_root(folder: Path) -> Path | None:
    """The tdata folder itself: `folder` if it holds a key file, or its `tdata` subfolder if that does."""
    for candidate in (folder, folder / "tdata"):
        if any((candidate / name).is_file() for name in KEY_FILES):
            return candidate
    return None


def _opentele() -> tuple[Any, Any]:
    """opentele's `td` package and its exceptions module (heavy: it loads Telethon)."""
    try:
        import opentele.exception
        import opentele.td
    except ImportError:
        raise InvalidValue("tdata needs the opentele-ng package: pip install -r requirements.txt") from None
    return opentele.td, opentele.exception


def _load(folder: Path, passcode: str) -> tuple[Any, str | None]:
    """opentele's TDesktop for `folder`, or None and why it could not be read ("passcode" or a message; the key
    file is known to be there, so a file opentele cannot open is damage too).

    opentele's exceptions derive from BaseException and keep the failing frame (with the passcode in it): they
    are caught here by their class and dropped before anything is raised, so no traceback carries them."""
    td, errors = _opentele()
    try:
        return td.TDesktop(str(folder), passcode=passcode), None
    except errors.TDataBadDecryptKey:
        return None, "passcode"
    except (errors.OpenTeleException, Exception):  # noqa: BLE001 - any damage in the folder is its one message
        return None, "the tdata folder is damaged or from an unsupported Telegram Desktop version: no account read"


def read_folder(folder: Path, passcode: str | None = None) -> list[PortableSession]:
    """Every account in a tdata folder (or a folder holding `tdata/`), in Telegram Desktop's order.

    Without a passcode first (a folder without one opens at once); with `passcode` if that fails: a passcode
    given for a batch does not stop the folders that have none."""
    root = tdata_root(folder)
    if root is None:
        if folder.is_dir() and not any(folder.iterdir()):
            raise InvalidValue("the tdata folder is empty")
        raise InvalidValue("not a Telegram Desktop tdata folder (no key_datas file in it)")
    desktop, problem = _load(root, "")
    if problem == "passcode":
        if not passcode:
            raise PasscodeRequired("the tdata folder is locked with a local passcode: give it")
        desktop, problem = _load(root, passcode)
        if problem == "passcode":
            raise PasscodeRequired("wrong local passcode for the tdata folder")
    if desktop is None:
        raise InvalidValue(str(problem))
    found = []
    for account in desktop.accounts:
        key = account.authKey
        if key is None:
            continue
        user_id = int(account.UserId) or None
        found.append(
            PortableSession(dc_session(int(account.MainDcId), bytes(key.key), False), user_id, TDESKTOP_API_ID)
        )
    if not found:
        raise InvalidValue("the tdata folder holds no logged-in account")
    return found


def write_folder(items: list[PortableSession], dest: Path, passcode: str | None = None) -> Path:
    """A tdata folder at `dest` (which must not exist) holding `items`, mode 0700 and its files 0600.

    Built beside `dest` under a private temporary name and renamed into place, so a failure leaves nothing."""
    if not items or len(items) > MAX_ACCOUNTS:
        raise InvalidValue(f"a tdata folder holds 1 to {MAX_ACCOUNTS} accounts")
    for item in items:
        if not item.user_id:
            raise InvalidValue(
                "a tdata folder records the account's Telegram user id, and it is not known yet "
                "(start the account once so the fleet learns it)"
            )
        if item.test_mode:
            raise InvalidValue("Telegram Desktop's tdata cannot hold a session on Telegram's test servers")
    if dest.exists():
        raise InvalidValue(f"{dest.name} already exists: nothing was overwritten")
    td, errors = _opentele()
    from opentele.api import API
    from opentele.td.configs import DcId

    building = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))  # 0700
    failed = False
    try:
        desktop = td.TDesktop()
        for index, item in enumerate(items):
            dc = DcId(item.session.dc_id)
            account = td.Account(owner=desktop, api=API.TelegramDesktop, index=index)
            key = td.AuthKey(item.session.auth_key, td.AuthKeyType.ReadFromFile, dc)
            # What opentele's own FromTelethon(flag=UseCurrentSession) does, without a client or a network.
            account._setMtpAuthorizationCustom(dc, int(item.user_id or 0), [key])
            desktop._addSingleAccount(account)
        desktop.SaveTData(str(building / "tdata"), passcode=passcode or None)
    except (errors.OpenTeleException, Exception):  # noqa: BLE001 - the frame holds the keys: dropped, one message
        failed = True
    if failed:
        shutil.rmtree(building, ignore_errors=True)
        raise InvalidValue("could not write the tdata folder")
    _private(building)
    try:
        (building / "tdata").rename(dest)
    except OSError as error:
        raise InvalidValue(f"cannot write {dest.name}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return dest


def _private(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o700)
        for name in dirs:
            os.chmod(Path(root) / name, 0o700)
        for name in files:
            os.chmod(Path(root) / name, 0o600)
