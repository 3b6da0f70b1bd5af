"""The backup archive's codec: JSON lines, compressed, encrypted and authenticated in chunks, in one file.

Layout: `MAGIC`, a 4-byte big-endian length and a JSON header (the format version, the key derivation's
name and parameters with its random salt, and a 16-byte check value of the key), then frames, each a 4-byte
length and an AES-256-GCM ciphertext of up to `CHUNK` bytes of a zlib stream. A frame's nonce is its index
(11 bytes) and a last-frame flag (1 byte), and the header is every frame's associated data: a changed byte
anywhere fails to authenticate, frames cannot be reordered, and a file cut short, even between two frames,
is told from a whole one. The key comes from a passphrase by scrypt, or from a key file's bytes by HKDF,
with the salt; the check value (another HKDF output) tells a wrong passphrase from a damaged file.

The zlib stream holds one JSON document per line; what the lines mean is `backend.backup`'s business. Values
that JSON has no type for travel tagged (`encode_value`): `{"$datetime": "…"}`, `{"$bytes": "…"}`, … and a
JSON column's own document as `{"$json": …}`, so that a bare object is always a tag. Writing and reading
stream: a large database never sits in memory, and the file appears under its name only once complete
(a temporary file, renamed), readable by its owner alone.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import hmac
import json
import math
import os
import struct
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"TGFLTBK\x01"
FORMAT_VERSION = 1
CHUNK = 1 << 20  # plaintext bytes per frame
MAX_FRAME = CHUNK + 4096  # a longer length field is damage (or not our file)
MAX_HEADER = 16 << 10
SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}  # 32 MiB of memory and a fraction of a second per guess
MAX_SCRYPT_N = 1 << 20
MIN_PASSPHRASE = 8
MIN_KEY_FILE = 16
MAX_KEY_FILE = 1 << 20
_LENGTH = struct.Struct(">I")


class ArchiveError(ValueError):
    """The archive cannot be written or read: wrong passphrase, damaged, truncated, not an archive. Its
    message names the problem and never any content."""


@dataclass(frozen=True)
class Passphrase:
    text: str = field(repr=False)


@dataclass(frozen=True)
class KeyFile:
    data: bytes = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> KeyFile:
        try:
            size = path.stat().st_size
            if size > MAX_KEY_FILE:
                raise ArchiveError(f"the key file {path} is larger than {MAX_KEY_FILE // 1024} KiB")
            data = path.read_bytes()
        except OSError as error:
            raise ArchiveError(f"cannot read the key file {path}: {error.strerror}") from None
        if len(data) < MIN_KEY_FILE:
            raise ArchiveError(f"the key file {path} is too short: a key file holds at least {MIN_KEY_FILE} bytes")
        return cls(data)


ArchiveSecret = Passphrase | KeyFile


# ---- keys ---------------------------------------------------------------------------------------------------


def _hkdf(material: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(material)


def _new_kdf(secret: ArchiveSecret) -> dict[str, Any]:
    salt = base64.b64encode(os.urandom(16)).decode()
    if isinstance(secret, KeyFile):
        return {"name": "hkdf-sha256", "salt": salt}
    if len(secret.text) < MIN_PASSPHRASE:
        raise ArchiveError(f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters")
    return {"name": "scrypt", "salt": salt, **SCRYPT}


def _derive(secret: ArchiveSecret, kdf: dict[str, Any]) -> tuple[bytes, bytes]:
    """(the AES-256-GCM key, the check value) for `secret` under the header's key derivation."""
    try:
        salt = base64.b64decode(kdf["salt"], validate=True)
        name = kdf["name"]
        if name == "scrypt":
            if isinstance(secret, KeyFile):
                raise ArchiveError("this archive was written with a passphrase, not a key file")
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            if not (2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ArchiveError("the archive's header is damaged (impossible key derivation parameters)")
            master = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.text.encode())
        elif name == "hkdf-sha256":
            if isinstance(secret, Passphrase):
                raise ArchiveError("this archive was written with a key file, not a passphrase: pass --key-file")
            master = _hkdf(secret.data, salt, b"tg-fleet backup key file")
        else:
            raise ArchiveError(f"the archive uses a key derivation this version does not know ({name!s:.40})")
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ArchiveError):
            raise
        raise ArchiveError("the archive's header is damaged (its key derivation cannot be read)") from None
    return _hkdf(master, salt, b"tg-fleet backup aes-256-gcm"), _hkdf(master, salt, b"tg-fleet backup check", 16)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# ---- writing ------------------------------------------------------------------------------------------------


class ArchiveWriter:
    """Writes records (anything JSON with `encode_value`'s tags) as the encrypted frames of one archive."""

    def __init__(self, handle: BinaryIO, secret: ArchiveSecret) -> None:
        kdf = _new_kdf(secret)
        key, check = _derive(secret, kdf)
        header = {"format": FORMAT_VERSION, "cipher": "AES-256-GCM", "kdf": kdf}
        header["check"] = base64.b64encode(check).decode()
        body = json.dumps(header, sort_keys=True).encode()
        self._aad = MAGIC + _LENGTH.pack(len(body)) + body
        self._handle = handle
        self._aead = AESGCM(key)
        self._zip = zlib.compressobj(6)
        self._pending = bytearray()
        self._index = 0
        handle.write(self._aad)

    def write(self, record: object) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
        self._pending += self._zip.compress(line.encode())
        while len(self._pending) >= CHUNK:
            self._frame(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]

    def close(self) -> None:
        """Ends the archive with its last frame (which may be short, or empty)."""
        self._pending += self._zip.flush()
        while len(self._pending) > CHUNK:
            self._frame(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]
        self._frame(bytes(self._pending), last=True)
        self._pending.clear()

    def _frame(self, plaintext: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._index, last), plaintext, self._aad)
        self._handle.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


@contextlib.contextmanager
def write_archive(path: Path, secret: ArchiveSecret, replace: bool = False) -> Iterator[ArchiveWriter]:
    """An `ArchiveWriter` onto a temporary file (mode 0600) next to `path`, renamed to `path` once the block
    ends without an error and the data is on disk; removed otherwise. An existing `path` is refused unless
    `replace`."""
    path = Path(path)
    if path.exists() and not replace:
        raise ArchiveError(f"{path} exists: choose another name, or pass --force to replace it")
    if not path.parent.is_dir():
        raise ArchiveError(f"cannot write {path}: no folder {path.parent}")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as error:
        raise ArchiveError(f"cannot write into {path.parent}: {error.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            writer = ArchiveWriter(handle, secret)
            yield writer
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# ---- reading ------------------------------------------------------------------------------------------------


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ArchiveError("the archive is truncated: it ends before its last part (an interrupted copy?)")
    return data


def _frames(handle: BinaryIO, secret: ArchiveSecret) -> Iterator[bytes]:
    """The decrypted frames of an archive, each checked; the last one checked to be the last."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise ArchiveError("not a fleet backup archive (or a version this one does not read)")
    length = _LENGTH.unpack(_read_exactly(handle, _LENGTH.size))[0]
    if length > MAX_HEADER:
        raise ArchiveError("the archive's header is damaged")
    body = _read_exactly(handle, length)
    try:
        header = json.loads(body)
        version, kdf, check = header["format"], header["kdf"], base64.b64decode(header["check"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise ArchiveError("the archive's header is damaged") from None
    if version != FORMAT_VERSION:
        raise ArchiveError(f"the archive is in format {version!s:.20}; this version reads format {FORMAT_VERSION}")
    key, expected = _derive(secret, kdf)
    if not hmac.compare_digest(check, expected):
        raise ArchiveError(f"wrong {'key file' if isinstance(secret, KeyFile) else 'passphrase'} for this archive")
    aad, aead, index = MAGIC + _LENGTH.pack(length) + body, AESGCM(key), 0
    sealed_length = handle.read(_LENGTH.size)
    while True:
        if len(sealed_length) != _LENGTH.size:
            raise ArchiveError("the archive is truncated: it ends before its last part (an interrupted copy?)")
        size = _LENGTH.unpack(sealed_length)[0]
        if not 16 <= size <= MAX_FRAME:
            raise ArchiveError("the archive is damaged: a part has an impossible length")
        sealed = _read_exactly(handle, size)
        sealed_length = handle.read(_LENGTH.size)
        last = not sealed_length
        try:
            yield aead.decrypt(_nonce(index, last), sealed, aad)
        except InvalidTag:
            if last and _opens(aead, _nonce(index, False), sealed, aad):
                raise ArchiveError(
                    "the archive is truncated: it ends before its last part (an interrupted copy?)"
                ) from None
            raise ArchiveError(
                "the archive is damaged: its content fails authentication (altered or corrupted)"
            ) from None
        if last:
            return
        index += 1


def _opens(aead: AESGCM, nonce: bytes, sealed: bytes, aad: bytes) -> bool:
    try:
        aead.decrypt(nonce, sealed, aad)
    except InvalidTag:
        return False
    return True


def read_archive(path: Path, secret: ArchiveSecret) -> Iterator[Any]:
    """The records of the archive at `path`, in order. Every frame is authenticated before its records are
    given, so a caller that must not act on a damaged archive reads it through once first."""
    try:
        handle = open(path, "rb")  # closed below, around the generator
    except OSError as error:
        raise ArchiveError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        unzip = zlib.decompressobj()
        rest = b""
        try:
            for plaintext in _frames(handle, secret):
                compressed = plaintext
                while compressed:  # a frame may inflate a hundredfold: at most CHUNK bytes of it at a time
                    data = rest + unzip.decompress(compressed, CHUNK)
                    compressed = unzip.unconsumed_tail
                    *lines, rest = data.split(b"\n")
                    for line in lines:
                        yield json.loads(line)
            rest += unzip.flush()
            if unzip.unused_data:
                raise ArchiveError("the archive is damaged: there is more after the end of its content")
        except (zlib.error, ValueError) as error:
            if isinstance(error, ArchiveError):
                raise
            raise ArchiveError("the archive is damaged: its content cannot be decoded") from None
        if rest or not unzip.eof:
            raise ArchiveError("the archive is damaged: its content ends in the middle of a record")


# ---- values -------------------------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A column's value as JSON: itself if JSON has its type, else tagged."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, dict | list):
        return {"$json": value}
    raise TypeError(f"a column value of type {type(value).__name__} cannot be backed up")


_DECODERS: dict[str, Any] = {
    "$float": float,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda parts: dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2]),
    "$decimal": decimal.Decimal,
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
    "$json": lambda document: document,
}


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    try:
        ((tag, payload),) = value.items()
        return _DECODERS[tag](payload)
    except (KeyError, ValueError, TypeError, IndexError, decimal.InvalidOperation):
        raise ArchiveError("the archive is damaged: a value cannot be decoded") from None
