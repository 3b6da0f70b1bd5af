"""The server side of MTProto's cryptography: its RSA key, the DH group, message keys, AES-IGE and SRP.

Written from the protocol description (core.telegram.org/mtproto), not by calling Telethon's client-side
helpers, so that the tests that run both against each other check something. AES-IGE itself is Telethon's
(`telethon.crypto.AES`, backed by OpenSSL).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from telethon.crypto import AES

# Telegram's 2048-bit safe prime for DH (auth keys) and SRP (2FA), with generator 3.
DH_PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F48198A0AA7C14058229493D22530F4DB"
    "FA336F6E0AC925139543AED44CCE7C3720FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4A4A695811051907E162753B56B0F6B41"
    "0DBA74D8A84B2A14B3144E0EF1284754FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F0D8115F635B105EE2E4E15D04B2454BF"
    "6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
DH_G = 3
DH_SAFETY = 2 ** (2048 - 64)  # g_a and g_b must lie in (2^1984, p - 2^1984)


class CryptoError(Exception):
    """A message or handshake step that does not decrypt or does not check out."""


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()  # noqa: S324 - MTProto's handshake uses SHA-1


def sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def be_bytes(number: int, length: int | None = None) -> bytes:
    """Big-endian bytes, as MTProto writes its big numbers (minimal length unless given)."""
    return number.to_bytes(length or (number.bit_length() + 7) // 8, "big")


def tl_bytes(data: bytes) -> bytes:
    """TL `bytes` serialisation (length prefix and padding to 4), for the RSA fingerprint."""
    head = bytes([len(data)]) if len(data) < 254 else b"\xfe" + len(data).to_bytes(3, "little")
    body = head + data
    return body + bytes(-len(body) % 4)


def aes_ige_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    return bytes(AES.encrypt_ige(data, key, iv))


def aes_ige_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    return bytes(AES.decrypt_ige(data, key, iv))


def is_probable_prime(number: int) -> bool:
    """Miller-Rabin, deterministic for the 31-bit factors of the handshake's pq."""
    if number < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17)
    if number in small:
        return True
    if any(number % p == 0 for p in small):
        return False
    d, r = number - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in small:
        x = pow(a, d, number)
        if x in (1, number - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, number)
            if x == number - 1:
                break
        else:
            return False
    return True


def random_prime(low: int, high: int) -> int:
    while True:
        candidate = int.from_bytes(os.urandom(4), "big") % (high - low) + low
        if is_probable_prime(candidate):
            return candidate


class ServerKey:
    """The server's RSA key pair: clients encrypt `p_q_inner_data` with the public half."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None) -> None:
        self._private = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._private.private_numbers()
        self.n = numbers.public_numbers.n
        self.e = numbers.public_numbers.e
        self._d = numbers.d

    @property
    def public_pem(self) -> str:
        """PKCS#1 PEM ("BEGIN RSA PUBLIC KEY"), the form `telethon.crypto.rsa.add_key` and TG_MTPROTO_PUBKEY take."""
        pem = self._private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        return pem.decode()

    @property
    def fingerprint(self) -> int:
        """The low 64 bits of SHA1 of the TL-serialised modulus and exponent, as a signed long."""
        digest = sha1(tl_bytes(be_bytes(self.n)), tl_bytes(be_bytes(self.e)))
        return int(struct.unpack("<q", digest[-8:])[0])

    def _decrypt_block(self, encrypted: bytes) -> bytes:
        if len(encrypted) != 256 or int.from_bytes(encrypted, "big") >= self.n:
            raise CryptoError("bad RSA block")
        return pow(int.from_bytes(encrypted, "big"), self._d, self.n).to_bytes(256, "big")

    def decrypt_inner_data(self, encrypted: bytes) -> bytes:
        """The TL bytes of `p_q_inner_data*` from `req_DH_params.encrypted_data`.

        Accepts both paddings clients use: RSA_PAD (the current scheme, with a temporary AES key) and the
        legacy `sha1(data) + data + random` (what Telethon 1.x sends). Returns the data with its random
        padding still attached; the caller reads one TL object from it.
        """
        block = self._decrypt_block(encrypted)
        data = _rsa_pad_unwrap(block)
        if data is not None:
            return data
        digest, rest = block[1:21], block[21:]
        if block[0] != 0:
            raise CryptoError("RSA block fits neither RSA_PAD nor the legacy padding")
        return _legacy_unwrap(digest, rest)


def _rsa_pad_unwrap(block: bytes) -> bytes | None:
    """Inverse of RSA_PAD: key_aes_encrypted = (temp_key XOR SHA256(aes_encrypted)) + aes_encrypted."""
    temp_key_xor, aes_encrypted = block[:32], block[32:]
    temp_key = bytes(a ^ b for a, b in zip(temp_key_xor, sha256(aes_encrypted), strict=True))
    data_with_hash = aes_ige_decrypt(aes_encrypted, temp_key, bytes(32))
    data_with_padding = data_with_hash[:192][::-1]
    if sha256(temp_key, data_with_padding) != data_with_hash[192:]:
        return None
    return data_with_padding


def rsa_pad_wrap(data: bytes, n: int, e: int) -> bytes:
    """RSA_PAD as a client does it (for the tests: Telethon 1.45 still sends the legacy padding)."""
    data_with_padding = data + os.urandom(192 - len(data))
    while True:
        temp_key = os.urandom(32)
        data_with_hash = data_with_padding[::-1] + sha256(temp_key, data_with_padding)
        aes_encrypted = aes_ige_encrypt(data_with_hash, temp_key, bytes(32))
        temp_key_xor = bytes(a ^ b for a, b in zip(temp_key, sha256(aes_encrypted), strict=True))
        key_aes_encrypted = temp_key_xor + aes_encrypted
        if int.from_bytes(key_aes_encrypted, "big") < n:
            return pow(int.from_bytes(key_aes_encrypted, "big"), e, n).to_bytes(256, "big")


def _legacy_unwrap(digest: bytes, rest: bytes) -> bytes:
    """`sha1(data) + data + padding`: the digest covers an unknown length; the TL object tells it."""
    from telethon.extensions import BinaryReader

    with BinaryReader(rest) as reader:
        try:
            reader.tgread_object()
        except Exception as error:
            raise CryptoError(f"legacy RSA padding: {error}") from error
        length = reader.tell_position()
    if sha1(rest[:length]) != digest:
        raise CryptoError("legacy RSA padding: SHA1 mismatch")
    return rest[:length]


# --- the handshake's AES key, from the nonces ---------------------------------------------------------------


def nonce_bytes(value: int, length: int) -> bytes:
    return value.to_bytes(length, "little", signed=True)


def tmp_aes_key_iv(server_nonce: int, new_nonce: int) -> tuple[bytes, bytes]:
    server, new = nonce_bytes(server_nonce, 16), nonce_bytes(new_nonce, 32)
    hash1, hash2, hash3 = sha1(new, server), sha1(server, new), sha1(new, new)
    return hash1 + hash2[:12], hash2[12:20] + hash3 + new[:4]


# --- auth keys and message encryption ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuthKeyData:
    key: bytes  # 256 bytes

    @property
    def key_id(self) -> int:
        """The low 64 bits of SHA1(auth_key), unsigned, as it travels in the clear before every message."""
        return int(struct.unpack("<Q", sha1(self.key)[12:20])[0])

    @property
    def aux_hash(self) -> bytes:
        return sha1(self.key)[:8]

    def new_nonce_hash(self, new_nonce: int, number: int) -> int:
        digest = sha1(nonce_bytes(new_nonce, 32), bytes([number]), self.aux_hash)
        return int.from_bytes(digest[4:20], "little", signed=True)


def message_key(auth_key: bytes, plaintext: bytes, *, from_client: bool) -> bytes:
    """msg_key = middle 128 bits of SHA256(substr(auth_key, 88 + x, 32) + plaintext); x = 0 client→server."""
    x = 0 if from_client else 8
    return sha256(auth_key[88 + x : 120 + x], plaintext)[8:24]


def aes_key_iv(auth_key: bytes, msg_key: bytes, *, from_client: bool) -> tuple[bytes, bytes]:
    x = 0 if from_client else 8
    a = sha256(msg_key, auth_key[x : x + 36])
    b = sha256(auth_key[40 + x : 76 + x], msg_key)
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def encrypt_to_client(auth_key: AuthKeyData, plaintext: bytes) -> bytes:
    """auth_key_id + msg_key + AES-IGE(plaintext + 12..1024 bytes of padding to a multiple of 16), x = 8."""
    padded = plaintext + os.urandom(-(len(plaintext) + 12) % 16 + 12)
    msg_key = message_key(auth_key.key, padded, from_client=False)
    key, iv = aes_key_iv(auth_key.key, msg_key, from_client=False)
    return struct.pack("<Q", auth_key.key_id) + msg_key + aes_ige_encrypt(padded, key, iv)


def decrypt_from_client(auth_key: AuthKeyData, packet: bytes) -> bytes:
    """The plaintext (salt, session_id, msg_id, seq_no, length, body, padding) of a client's message."""
    msg_key, encrypted = packet[8:24], packet[24:]
    if len(encrypted) % 16 or not encrypted:
        raise CryptoError("encrypted data is not a whole number of AES blocks")
    key, iv = aes_key_iv(auth_key.key, msg_key, from_client=True)
    plaintext = aes_ige_decrypt(encrypted, key, iv)
    if message_key(auth_key.key, plaintext, from_client=True) != msg_key:
        raise CryptoError("msg_key does not match the decrypted data")
    length = struct.unpack("<i", plaintext[28:32])[0]
    padding = len(plaintext) - 32 - length
    if length < 0 or length % 4 or not 12 <= padding <= 1024:
        raise CryptoError(f"bad message length {length} for {len(plaintext)} bytes")
    return plaintext


# --- SRP (2FA passwords) ------------------------------------------------------------------------------------


def _pad256(number: int) -> bytes:
    return number.to_bytes(256, "big")


def password_hash(password: str, salt1: bytes, salt2: bytes) -> int:
    """x of SRP: PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow (~0.1 s)."""
    hash1 = sha256(salt1, password.encode(), salt1)
    hash2 = sha256(salt2, hash1, salt2)
    hash3 = hashlib.pbkdf2_hmac("sha512", hash2, salt1, 100000)
    return int.from_bytes(sha256(salt2, hash3, salt2), "big")


@dataclass
class SrpVerifier:
    """What the server keeps of a 2FA password: its salts and v = g^x mod p."""

    salt1: bytes
    salt2: bytes
    v: int

    @classmethod
    def create(cls, password: str) -> SrpVerifier:
        salt1, salt2 = os.urandom(40), os.urandom(16)
        return cls(salt1, salt2, pow(DH_G, password_hash(password, salt1, salt2), DH_PRIME))


@dataclass
class SrpChallenge:
    srp_id: int
    b: int
    B: int  # SRP's own name

    @property
    def B_bytes(self) -> bytes:  # noqa: N802
        return _pad256(self.B)


def srp_challenge(verifier: SrpVerifier) -> SrpChallenge:
    """B = k*v + g^b mod p, for account.getPassword."""
    k = int.from_bytes(sha256(_pad256(DH_PRIME), _pad256(DH_G)), "big")
    while True:
        b = int.from_bytes(os.urandom(256), "big")
        g_b = pow(DH_G, b, DH_PRIME)
        if g_b.bit_length() >= 2048 - 64 and DH_PRIME - g_b >= DH_SAFETY:  # what clients check of g^b
            break
    srp_id = int.from_bytes(os.urandom(8), "little", signed=True)
    return SrpChallenge(srp_id, b, (k * verifier.v + g_b) % DH_PRIME)


def srp_check(verifier: SrpVerifier, challenge: SrpChallenge, a_bytes: bytes, m1: bytes) -> bool:
    """Whether the client's M1 proves it knows the password: S = (A * v^u)^b mod p."""
    a = int.from_bytes(a_bytes, "big")
    if not 0 < a < DH_PRIME:
        return False
    a_pad, b_pad = _pad256(a), challenge.B_bytes
    u = int.from_bytes(sha256(a_pad, b_pad), "big")
    s = pow(a * pow(verifier.v, u, DH_PRIME), challenge.b, DH_PRIME)
    k_session = sha256(_pad256(s))
    p_hash, g_hash = sha256(_pad256(DH_PRIME)), sha256(_pad256(DH_G))
    expected = sha256(
        bytes(x ^ y for x, y in zip(p_hash, g_hash, strict=True)),
        sha256(verifier.salt1),
        sha256(verifier.salt2),
        a_pad,
        b_pad,
        k_session,
    )
    return expected == m1
