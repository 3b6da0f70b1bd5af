"""MTProto's TCP transports, server side: the mode is recognised from the first bytes a client sends.

- full (Telethon's default, `ConnectionTcpFull`): length, sequence number, payload, CRC32;
- intermediate (`0xeeeeeeee` first): length + payload; padded intermediate (`0xdddddddd`): the same with 0-3
  random bytes after the payload;
- abridged (`0xef` first): a one-byte (or 0x7f + three-byte) length in 4-byte words;
- obfuscated (64 random bytes first): one of the above inside AES-256-CTR, keys taken from that header, or
  from the header and an MTProxy secret (`ConnectionTcpMTProxy*`).

Transport-level errors are a bare negative int32 in place of a packet (-404: unknown auth key).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from zlib import crc32

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
PADDED_TAG = b"\xdd\xdd\xdd\xdd"
ABRIDGED_TAG = b"\xef\xef\xef\xef"
MAX_PACKET = 16 * 1024 * 1024


class TransportError(Exception):
    """A malformed frame: bad length, sequence number or checksum. The connection is closed."""


class _Stream:
    """Reads exactly n bytes, decrypting if obfuscated; writes, encrypting if obfuscated."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._pushed_back = b""
        self._decrypt: CipherContext | None = None
        self._encrypt: CipherContext | None = None

    def obfuscate(self, decryptor: CipherContext, encryptor: CipherContext) -> None:
        self._decrypt, self._encrypt = decryptor, encryptor

    def push_back(self, data: bytes) -> None:
        self._pushed_back = data + self._pushed_back

    async def read(self, n: int) -> bytes:
        head, self._pushed_back = self._pushed_back[:n], self._pushed_back[n:]
        data = head + (await self.reader.readexactly(n - len(head)) if n > len(head) else b"")
        return self._decrypt.update(data) if self._decrypt is not None else data

    def write(self, data: bytes) -> None:
        if self._encrypt is not None:
            data = self._encrypt.update(data)
        self.writer.write(data)


class _Codec:
    name = ""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    async def read_packet(self) -> bytes:
        raise NotImplementedError

    def encode(self, payload: bytes) -> bytes:
        raise NotImplementedError


class FullCodec(_Codec):
    name = "full"

    def __init__(self, stream: _Stream) -> None:
        super().__init__(stream)
        self._recv_seq = self._send_seq = 0

    async def read_packet(self) -> bytes:
        head = await self.stream.read(8)
        length, seq = struct.unpack("<ii", head)
        if not 12 <= length <= MAX_PACKET:
            raise TransportError(f"full transport: bad length {length}")
        rest = await self.stream.read(length - 8)
        payload, checksum = rest[:-4], struct.unpack("<I", rest[-4:])[0]
        if crc32(head + payload) != checksum:
            raise TransportError("full transport: CRC32 mismatch")
        if seq != self._recv_seq:
            raise TransportError(f"full transport: sequence number {seq}, expected {self._recv_seq}")
        self._recv_seq += 1
        return payload

    def encode(self, payload: bytes) -> bytes:
        frame = struct.pack("<ii", len(payload) + 12, self._send_seq) + payload
        self._send_seq += 1
        return frame + struct.pack("<I", crc32(frame))


class IntermediateCodec(_Codec):
    name = "intermediate"

    async def read_packet(self) -> bytes:
        length = struct.unpack("<i", await self.stream.read(4))[0]
        if not 0 < length <= MAX_PACKET:
            raise TransportError(f"intermediate transport: bad length {length}")
        return await self.stream.read(length)

    def encode(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload


class PaddedIntermediateCodec(IntermediateCodec):
    name = "padded-intermediate"

    async def read_packet(self) -> bytes:
        packet = await super().read_packet()
        return packet[: len(packet) - len(packet) % 4]

    def encode(self, payload: bytes) -> bytes:
        return super().encode(payload + os.urandom(os.urandom(1)[0] % 4))


class AbridgedCodec(_Codec):
    name = "abridged"

    async def read_packet(self) -> bytes:
        words = (await self.stream.read(1))[0]
        if words >= 0x7F:
            words = int.from_bytes(await self.stream.read(3), "little")
        return await self.stream.read(words * 4)

    def encode(self, payload: bytes) -> bytes:
        words = len(payload) // 4
        head = bytes([words]) if words < 0x7F else b"\x7f" + words.to_bytes(3, "little")
        return head + payload


_CODECS = {INTERMEDIATE_TAG: IntermediateCodec, PADDED_TAG: PaddedIntermediateCodec, ABRIDGED_TAG: AbridgedCodec}


def _ctr(key: bytes, iv: bytes) -> CipherContext:
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()


def _obfuscation_keys(header: bytes, secret: bytes | None) -> tuple[CipherContext, CipherContext, bytes]:
    """(decryptor of what the client sends, encryptor of what we send, the decrypted header)."""
    forward, backward = header[8:56], header[8:56][::-1]
    keys = [forward[:32], backward[:32]]
    if secret is not None:
        keys = [hashlib.sha256(key + secret).digest() for key in keys]
    decryptor = _ctr(keys[0], forward[32:48])
    encryptor = _ctr(keys[1], backward[32:48])
    return decryptor, encryptor, decryptor.update(header)


class Transport:
    """One client connection's framing. `accept` recognises the mode; then read_packet / send."""

    def __init__(self, stream: _Stream, codec: _Codec, mode: str) -> None:
        self._stream, self._codec, self.mode = stream, codec, mode

    @classmethod
    async def accept(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mtproxy_secret: bytes | None = None
    ) -> Transport:
        stream = _Stream(reader, writer)
        first = await stream.read(1)
        if first == b"\xef":
            return cls(stream, AbridgedCodec(stream), "abridged")
        first += await stream.read(3)
        if first in (INTERMEDIATE_TAG, PADDED_TAG):
            codec = _CODECS[first](stream)
            return cls(stream, codec, codec.name)
        second = await stream.read(4)
        if second == bytes(4):  # a full-transport frame: length, then sequence number 0
            stream.push_back(first + second)
            return cls(stream, FullCodec(stream), "full")
        header = first + second + await stream.read(56)
        for secret, mode in ((None, "obfuscated"), (mtproxy_secret, "mtproxy")):
            if mode == "mtproxy" and secret is None:
                continue
            decryptor, encryptor, plain = _obfuscation_keys(header, secret)
            tag = plain[56:60]
            if tag in _CODECS:
                stream.obfuscate(decryptor, encryptor)
                codec = _CODECS[tag](stream)
                return cls(stream, codec, f"{mode}/{codec.name}")
        raise TransportError("unrecognised transport header")

    async def read_packet(self) -> bytes:
        return await self._codec.read_packet()

    async def send(self, payload: bytes) -> None:
        self._stream.write(self._codec.encode(payload))
        await self._stream.writer.drain()

    async def send_error(self, code: int) -> None:
        """A transport error: -code as a bare int32 (e.g. 404 for an auth key the server does not know)."""
        await self.send(struct.pack("<i", -code))

    def close(self) -> None:
        self._stream.writer.close()
