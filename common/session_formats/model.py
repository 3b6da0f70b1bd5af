"""What every session format carries once decoded (`PortableSession`), the formats' names, and Telegram's data
centre addresses for the formats that record only a DC id (Pyrogram, tdata)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from common.sessions import SessionData, check_session_data
from common.validation import InvalidValue

# Telegram's own addresses, as Pyrogram/Kurigram map a DC id (pyrogram/storage/sqlite_storage.py). The worker
# points every session at TG_MTPROTO_DC when that is set, so a sandbox or a custom DC still works.
PRODUCTION_DCS = {
    1: "149.154.175.53",
    2: "149.154.167.51",
    3: "149.154.175.100",
    4: "149.154.167.91",
    5: "91.108.56.130",
    203: "91.105.192.100",
}
TEST_DCS = {1: "149.154.175.10", 2: "149.154.167.40", 3: "149.154.175.117"}
TELEGRAM_PORT = 443
# Telegram Desktop's own app: every account in a tdata folder was authorised with it (public in its source).
TDESKTOP_API_ID = 2040
TDESKTOP_API_HASH = "b18441a1ff607e10a989891a5462e627"
KNOWN_API_HASHES = {TDESKTOP_API_ID: TDESKTOP_API_HASH}


class SessionFormat(StrEnum):
    TELETHON_STRING = "telethon-string"
    TELETHON_FILE = "telethon-file"
    PYROGRAM_STRING = "pyrogram-string"
    PYROGRAM_FILE = "pyrogram-file"
    TDATA = "tdata"

    @property
    def is_string(self) -> bool:
        return self in (SessionFormat.TELETHON_STRING, SessionFormat.PYROGRAM_STRING)


@dataclass(frozen=True)
class PortableSession:
    """One logged-in account's session, whatever format it came in: where it connects and its auth key, and
    what some formats also record (the Telegram user id, the API ID it was authorised with, test servers)."""

    session: SessionData
    user_id: int | None = None
    api_id: int | None = None
    test_mode: bool = False

    def __repr__(self) -> str:  # never the auth key, whoever prints it
        return (
            f"PortableSession(dc={self.session.dc_id}, address={self.session.server_address}:{self.session.port}, "
            f"user_id={self.user_id}, api_id={self.api_id}, test_mode={self.test_mode})"
        )


class PasscodeRequired(InvalidValue):
    """A tdata folder locked with a local passcode, and none or a wrong one was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "passcode")


def dc_session(
    dc_id: int, auth_key: bytes, test_mode: bool, address: str | None = None, port: int | None = None
) -> SessionData:
    """The `SessionData` of a format that records a DC id: its own address if it has one, else Telegram's."""
    if not address:
        table = TEST_DCS if test_mode else PRODUCTION_DCS
        if dc_id not in table:
            where = "test" if test_mode else "production"
            raise InvalidValue(f"the session names data centre {dc_id}, which Telegram's {where} servers do not have")
        address, port = table[dc_id], TELEGRAM_PORT
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise InvalidValue("the session names a server address that is not an IP address") from None
    return check_session_data(SessionData(int(dc_id), address, int(port or TELEGRAM_PORT), bytes(auth_key)))


def is_test_address(address: str) -> bool:
    return address in TEST_DCS.values()


def write_private(dest: Path, content: bytes) -> Path:
    """Create `dest` (never over an existing file) readable by its owner only, holding `content`."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise InvalidValue(f"{dest.name} already exists: nothing was overwritten") from None
    except OSError as error:
        raise InvalidValue(f"cannot write {dest.name}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(dest, 0o600)  # whatever the umask
    except OSError as error:
        dest.unlink(missing_ok=True)
        raise InvalidValue(f"cannot write {dest.name}: {error.strerror or error}") from None
    return dest
