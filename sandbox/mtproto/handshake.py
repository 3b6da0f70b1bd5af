"""Creating an auth key, server side (core.telegram.org/mtproto/auth_key), over unencrypted messages.

    req_pq_multi(nonce)                        -> resPQ(nonce, server_nonce, pq, [fingerprint])
    req_DH_params(..., encrypted_data)         -> server_DH_params_ok(AES-IGE(sha1 + server_DH_inner_data))
    set_client_DH_params(AES-IGE(client_DH_inner_data)) -> dh_gen_ok (auth_key = g_b ^ a mod p)

An unencrypted message is auth_key_id = 0, msg_id, length, body.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from telethon.extensions import BinaryReader
from telethon.tl import functions, types

from .crypto import (
    DH_G,
    DH_PRIME,
    DH_SAFETY,
    AuthKeyData,
    CryptoError,
    ServerKey,
    aes_ige_decrypt,
    aes_ige_encrypt,
    be_bytes,
    nonce_bytes,
    random_prime,
    sha1,
    tmp_aes_key_iv,
)

PQ_INNER_TYPES = (types.PQInnerData, types.PQInnerDataDc, types.PQInnerDataTemp, types.PQInnerDataTempDc)


class HandshakeError(Exception):
    """A step out of order or with wrong nonces: the connection is closed, as Telegram does."""


def read_plain(packet: bytes) -> tuple[int, object]:
    """(msg_id, request) of an unencrypted message."""
    auth_key_id, msg_id, length = struct.unpack("<qqi", packet[:20])
    if auth_key_id != 0 or length != len(packet) - 20:
        raise HandshakeError("malformed unencrypted message")
    with BinaryReader(packet[20:]) as reader:
        return msg_id, reader.tgread_object()


def write_plain(msg_id: int, answer: object) -> bytes:
    body = bytes(answer)  # type: ignore[call-overload]
    return struct.pack("<qqi", 0, msg_id, len(body)) + body


@dataclass
class Handshake:
    """One connection's key exchange in progress. `answer` takes each request; `auth_key` is set when done."""

    key: ServerKey
    dc_id: int
    nonce: int | None = None
    server_nonce: int = 0
    new_nonce: int = 0
    pq: tuple[int, int] = (0, 0)
    a: int = 0
    tmp_key_iv: tuple[bytes, bytes] = (b"", b"")
    auth_key: AuthKeyData | None = None
    server_salt: int = 0

    def answer(self, request: object) -> object:
        if isinstance(request, functions.ReqPqMultiRequest | functions.ReqPqRequest):
            return self._res_pq(request.nonce)
        if isinstance(request, functions.ReqDHParamsRequest):
            return self._dh_params(request)
        if isinstance(request, functions.SetClientDHParamsRequest):
            return self._dh_gen(request)
        raise HandshakeError(f"{type(request).__name__} is not a handshake step")

    def _check_nonces(self, request: object) -> None:
        if self.nonce is None or (request.nonce, request.server_nonce) != (self.nonce, self.server_nonce):  # type: ignore[attr-defined]
            raise HandshakeError("wrong nonce or server_nonce")

    def _res_pq(self, nonce: int) -> types.ResPQ:
        self.nonce = nonce
        self.server_nonce = int.from_bytes(os.urandom(16), "little", signed=True)
        p, q = sorted((random_prime(2**30, 2**31), random_prime(2**30, 2**31)))
        self.pq = (p, q)
        return types.ResPQ(nonce, self.server_nonce, be_bytes(p * q), [self.key.fingerprint])

    def _dh_params(self, request: functions.ReqDHParamsRequest) -> types.ServerDHParamsOk:
        self._check_nonces(request)
        if request.public_key_fingerprint != self.key.fingerprint:
            raise HandshakeError("req_DH_params for an RSA key this server does not have")
        p, q = self.pq
        if (request.p, request.q) != (be_bytes(p), be_bytes(q)):
            raise HandshakeError("wrong factorisation of pq")
        try:
            with BinaryReader(self.key.decrypt_inner_data(request.encrypted_data)) as reader:
                inner = reader.tgread_object()
        except CryptoError as error:
            raise HandshakeError(str(error)) from error
        if not isinstance(inner, PQ_INNER_TYPES):
            raise HandshakeError(f"expected p_q_inner_data, got {type(inner).__name__}")
        if (inner.nonce, inner.server_nonce, inner.pq, inner.p, inner.q) != (
            self.nonce,
            self.server_nonce,
            be_bytes(p * q),
            be_bytes(p),
            be_bytes(q),
        ):
            raise HandshakeError("p_q_inner_data does not match resPQ")
        self.new_nonce = inner.new_nonce
        while True:
            self.a = int.from_bytes(os.urandom(256), "big")
            g_a = pow(DH_G, self.a, DH_PRIME)
            if DH_SAFETY <= g_a <= DH_PRIME - DH_SAFETY:
                break
        now = int(time.time())
        inner_answer = bytes(
            types.ServerDHInnerData(self.nonce, self.server_nonce, DH_G, be_bytes(DH_PRIME), be_bytes(g_a), now)
        )
        with_hash = sha1(inner_answer) + inner_answer
        with_hash += os.urandom(-len(with_hash) % 16)
        self.tmp_key_iv = tmp_aes_key_iv(self.server_nonce, self.new_nonce)
        return types.ServerDHParamsOk(self.nonce, self.server_nonce, aes_ige_encrypt(with_hash, *self.tmp_key_iv))

    def _dh_gen(self, request: functions.SetClientDHParamsRequest) -> types.DhGenOk | types.DhGenRetry:
        self._check_nonces(request)
        if not self.a:
            raise HandshakeError("set_client_DH_params before req_DH_params")
        if len(request.encrypted_data) % 16:
            raise HandshakeError("set_client_DH_params: not whole AES blocks")
        plain = aes_ige_decrypt(request.encrypted_data, *self.tmp_key_iv)
        with BinaryReader(plain[20:]) as reader:
            inner = reader.tgread_object()
            length = reader.tell_position()
        if not isinstance(inner, types.ClientDHInnerData) or sha1(plain[20 : 20 + length]) != plain[:20]:
            raise HandshakeError("client_DH_inner_data does not check out")
        self._check_nonces(inner)
        g_b = int.from_bytes(inner.g_b, "big")
        if not DH_SAFETY <= g_b <= DH_PRIME - DH_SAFETY:
            raise HandshakeError("g_b out of the safe range")
        shared = pow(g_b, self.a, DH_PRIME)
        key = AuthKeyData(shared.to_bytes(256, "big"))
        if shared.bit_length() <= 2048 - 8:
            # Telethon keeps the key without its leading zero byte (a 255-byte key) and would never agree with
            # us about it: ask for another try, which the protocol provides for.
            self.a = 0
            return types.DhGenRetry(self.nonce, self.server_nonce, key.new_nonce_hash(self.new_nonce, 2))
        self.auth_key = key
        # the first server salt: substr(new_nonce, 0, 8) XOR substr(server_nonce, 0, 8)
        new, server = nonce_bytes(self.new_nonce, 32)[:8], nonce_bytes(self.server_nonce, 16)[:8]
        salt = bytes(a ^ b for a, b in zip(new, server, strict=True))
        self.server_salt = struct.unpack("<q", salt)[0]
        return types.DhGenOk(self.nonce, self.server_nonce, key.new_nonce_hash(self.new_nonce, 1))
