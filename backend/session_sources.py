"""Where imported sessions are found, for the CLI's `accounts import` and the admin bot's uploads alike: a typed
string, one file, one tdata folder, or a folder or `.zip` of them mixed — `.session` files (Telethon's or
Pyrogram's), text files of strings (`*.txt`), tdata folders (or folders holding `tdata/`), and `.zip` archives of
any of these, each with its sidecar JSON — and what a sidecar says of each account (phone, credentials, proxy).

Sidecars: `X.json` beside a file `X.session`/`X.txt`; for a tdata, `NAME.json` beside its folder `NAME` (the
tdata folder itself, or the folder holding `tdata/`), else `NAME/NAME.json`, else the one `.json` inside
`NAME`. A zip's own sidecar (`A.json` beside `A.zip`) is the sidecar of a tdata at the archive's root.

A sidecar's `phone` names its one account; a tdata holding several gives each one's in `"accounts":
[{"user_id": ..., "phone": ...}]` (or a top-level `user_id` names the one its `phone` is for). Its 2FA password
is read from `twoFA`, `2fa`, `two_fa` or `password` (what sellers' and exporters' sidecars use), first found.

Nothing here talks to the database, Redis or Telegram; archives are unpacked into a private temporary folder
with bounds on entries and sizes (no path leaves it, no link is followed), and an upload's bytes are saved in
one the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

from common.session_formats import KNOWN_API_HASHES, PortableSession, tdata_root
from common.sessions import MAX_SESSION_FILE_BYTES, MAX_SIDECAR_BYTES, read_small_file
from common.validation import InvalidValue, is_ascii_number

FILE_SUFFIXES = (".session", ".txt")
MAX_SOURCES = 10_000
MAX_DEPTH = 4
MAX_ZIP_ENTRIES = 50_000
MAX_ZIP_BYTES = 512 * 1024 * 1024
PASSWORD_KEYS = ("twoFA", "2fa", "two_fa", "twofa", "password")
PROXY_KINDS = {1: "socks4", 2: "socks5", 3: "http", "socks4": "socks4", "socks5": "socks5", "http": "http"}
UPLOAD_SUFFIXES = (*FILE_SUFFIXES, ".zip")


class GivenCredentials(Protocol):
    """What the operator gave for every session of one import (the CLI's options, the bot wizard's answers)."""

    @property
    def api_id(self) -> object: ...

    @property
    def api_hash(self) -> str | None: ...

    @property
    def batch(self) -> bool: ...  # many sessions at once: a sidecar's credentials come first


@dataclass(frozen=True)
class Source:
    """One thing to import: a session string (`text`), or a file or tdata folder (`path`)."""

    name: str  # as the operator sees it: relative to the folder or archive
    path: Path | None = None
    text: str | None = None
    sidecar: Path | None = None
    phone_hint: str | None = None  # the phone its name gives: 79991234567.session, 79991234567/tdata
    problem: str | None = None  # why it cannot be read at all (a damaged archive)


def phone_in(name: str) -> str | None:
    return name if is_ascii_number(name.lstrip("+")) else None


def file_source(path: Path, name: str | None = None) -> Source:
    return Source(name or path.name, path, sidecar=path.with_suffix(".json"), phone_hint=phone_in(path.stem))


def tdata_source(folder: Path, name: str | None = None) -> Source:
    """A tdata folder (or the folder holding `tdata/`), its sidecar and the phone its name gives."""
    holder = folder.parent if folder.name == "tdata" else folder
    shown = name or (f"{holder.name}/tdata" if holder is not folder else folder.name)
    return Source(shown, folder, sidecar=_tdata_sidecar(holder), phone_hint=phone_in(holder.name))


def _tdata_sidecar(holder: Path) -> Path:
    """The first of `NAME.json` beside, `NAME/NAME.json`, the one `.json` in `NAME`; else where the first would be."""
    beside = holder.with_name(holder.name + ".json")
    for candidate in (beside, holder / f"{holder.name}.json"):
        if candidate.is_file():
            return candidate
    inside = sorted(holder.glob("*.json"))
    return inside[0] if len(inside) == 1 else beside


def load_sidecar(path: Path | None) -> dict[str, Any]:
    """The sidecar JSON object, `{}` if there is none; InvalidValue says what is wrong with one."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(read_small_file(path, MAX_SIDECAR_BYTES))
    except InvalidValue as error:
        raise InvalidValue(f"its {path.name} {error}") from None
    except ValueError:
        raise InvalidValue(f"its {path.name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidValue(f"its {path.name} is not a JSON object")
    return data


def sources_in(
    folder: Path, archives: contextlib.ExitStack, prefix: str = "", in_archive: bool = False
) -> list[Source]:
    """Every source in `folder`, sorted by name: a tdata folder alone if `folder` is one; archives in it are
    unpacked (for as long as `archives` is open), archives in archives are not."""
    if tdata_root(folder) is not None and not any(_is_candidate_file(p) for p in folder.iterdir()):
        return [tdata_source(folder, prefix or folder.name)]
    found: list[Source] = []
    _walk(folder, archives, prefix, 0, found, in_archive)
    return found


def _is_candidate_file(path: Path) -> bool:
    return path.suffix.lower() in (*FILE_SUFFIXES, ".zip") and not path.name.startswith(".")


def _walk(
    folder: Path, archives: contextlib.ExitStack, prefix: str, depth: int, found: list[Source], in_archive: bool
) -> None:
    for entry in sorted(folder.iterdir()):
        name = f"{prefix}/{entry.name}" if prefix else entry.name
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if len(found) >= MAX_SOURCES:
            raise InvalidValue(f"more than {MAX_SOURCES:,} sessions in one import: split it")
        suffix = entry.suffix.lower()
        if suffix in FILE_SUFFIXES:  # a folder or a FIFO named so is reported by the reader
            found.append(file_source(entry, name))
        elif suffix == ".zip" and entry.is_file() and not in_archive:
            try:
                root = archives.enter_context(unpacked(entry))
            except InvalidValue as error:
                found.append(Source(name, entry, problem=str(error)))
                continue
            found.extend(sources_in(root, archives, name, in_archive=True))
        elif entry.is_dir() and not entry.is_symlink():
            if tdata_root(entry) is not None:
                found.append(tdata_source(entry, name))
            elif depth < MAX_DEPTH:
                _walk(entry, archives, name, depth + 1, found, in_archive)


@contextlib.contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """The archive's files in a private temporary folder named after it (`A.zip` → `.../A/`), with its
    sidecar `A.json` beside; removed afterwards. Entries over the session size limit (a tdata's media cache)
    are left out."""
    scratch = Path(tempfile.mkdtemp(prefix="fleet-import-"))
    try:
        root = scratch / archive.stem
        root.mkdir(mode=0o700)
        _extract(archive, root)
        sidecar = archive.with_suffix(".json")
        if sidecar.is_file():
            shutil.copyfile(sidecar, scratch / f"{archive.stem}.json")
        yield root
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract(archive: Path, root: Path) -> None:
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidValue("is not a readable .zip archive") from None
    with bundle:
        entries = bundle.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise InvalidValue(f"holds more than {MAX_ZIP_ENTRIES:,} entries")
        total = 0
        for entry in entries:
            inside = PurePosixPath(entry.filename.replace("\\", "/"))
            parts = inside.parts
            if entry.is_dir() or not parts or parts[0] == "__MACOSX":
                continue
            if entry.flag_bits & 0x1:
                raise InvalidValue("is password-protected: unpack it and import the folder")
            if stat.S_ISLNK(entry.external_attr >> 16) or entry.file_size > MAX_SESSION_FILE_BYTES:
                continue
            target = root.joinpath(*parts)
            if inside.is_absolute() or ".." in parts or ":" in parts[0] or not target.is_relative_to(root):
                raise InvalidValue(f"names a file outside itself ({entry.filename!r}): refused")
            total += entry.file_size
            if total > MAX_ZIP_BYTES:
                raise InvalidValue(f"unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                with bundle.open(entry) as stream:
                    content = stream.read(MAX_SESSION_FILE_BYTES + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                raise InvalidValue(f"is damaged ({entry.filename!r} cannot be read)") from None
            if len(content) > MAX_SESSION_FILE_BYTES:
                continue
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)


@contextlib.contextmanager
def saved_upload(name: str, content: bytes) -> Iterator[Path]:
    """An uploaded file's bytes as a file in a private temporary folder (removed afterwards), named by its
    suffix only (`.session`, `.txt`, `.zip`; else none): the sender's file name never becomes a path."""
    suffix = Path(name).suffix.lower()
    scratch = Path(tempfile.mkdtemp(prefix="fleet-upload-"))
    try:
        path = scratch / ("upload" + (suffix if suffix in UPLOAD_SUFFIXES else ""))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---- what a sidecar says of one account ----------------------------------------------------------------


def credentials(fields: Mapping[str, Any], item: PortableSession, given: GivenCredentials) -> tuple[object, str | None]:
    """(API ID, API hash) for one session, as a pair from one place: the sidecar's or the operator's (these
    first for one session imported by itself), else the API ID the session records with the hash given or
    known for it. None for what none gives: an API ID alone is that app of the pool, neither an app of it."""
    typed = (given.api_id, given.api_hash)
    side = (fields.get("app_id") or fields.get("api_id"), fields.get("app_hash") or fields.get("api_hash"))
    places = (side, typed) if given.batch else (typed, side)
    lone_hash = places[0][1] or places[1][1]
    for api_id, api_hash in places:
        if api_id:
            return api_id, str(api_hash) if api_hash else None
    if item.api_id is not None:
        return item.api_id, str(lone_hash or KNOWN_API_HASHES.get(item.api_id) or "") or None
    return None, str(lone_hash) if lone_hash else None  # the service says a hash needs its API ID


def account_fields(sidecar: Mapping[str, Any], item: PortableSession, count: int) -> dict[str, Any]:
    """The sidecar as it applies to one account of its source (see the module's docstring)."""
    fields = {key: value for key, value in sidecar.items() if key != "accounts"}
    entries = sidecar.get("accounts")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and item.user_id and str(entry.get("user_id")) == str(item.user_id):
            return {**fields, **entry}
    owner = fields.get("user_id", fields.get("id"))
    if count > 1 and not (item.user_id and str(owner) == str(item.user_id)):
        fields.pop("phone", None)
    return fields


def sidecar_password(fields: Mapping[str, Any]) -> str | None:
    """The account's 2FA password a sidecar gives (see the module's docstring), None if it gives none."""
    for key in PASSWORD_KEYS:
        value = fields.get(key)
        if isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    return None


def sidecar_proxy(value: object) -> str | None:
    """A sidecar's proxy as a URL: given as one, or as Telethon's tuple `[type, host, port, rdns, user, pass]`."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        value = [value.get(k) for k in ("proxy_type", "addr", "port", "rdns", "username", "password")]
    if not isinstance(value, list) or len(value) < 3 or not isinstance(value[0], int | str):
        return None
    kind = PROXY_KINDS.get(value[0] if isinstance(value[0], int) else str(value[0]).lower())
    if kind is None:
        raise InvalidValue("its sidecar's proxy is not socks4, socks5 or http")
    user, password = [*value[4:6], None, None][:2]
    secret = f"{quote(str(user), safe='')}:{quote(str(password or ''), safe='')}@" if user else ""
    return f"{kind}://{secret}{value[1]}:{value[2]}"
