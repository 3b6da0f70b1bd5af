"""Secrets sealed to one key pair (`common.sealing`): round trips, the wrong key, context or version, tampering,
derived keys, the private key file's safety checks, and no key material in any error."""

from __future__ import annotations

import base64
import json
import os
import random
import stat
import threading
from pathlib import Path

import pytest

from common.sealing import (
    KeyFileError,
    KeyPair,
    SealError,
    fingerprint,
    is_sealed,
    load_or_create,
    open_sealed,
    parse_public_key,
    seal,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SESSION = "1" + base64.urlsafe_b64encode(random.Random(17).randbytes(300)).decode()[:399]  # a 400-char session


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def random_text(rng: random.Random, max_len: int = 200) -> str:
    alphabet = [chr(c) for c in (*range(32, 127), *range(0x400, 0x450), 0x1F600, 0x1F916, 0, 10, 0xE9, 0x20AC)]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(max_len)))


def tampered(token: str, position: int, bit: int = 1) -> str:
    data = bytearray(unb64(token[3:]))
    data[position] ^= bit
    return "s1." + b64(bytes(data))


@pytest.fixture(scope="module")
def worker() -> KeyPair:
    return KeyPair.generate()


def test_round_trip_random_texts_and_contexts(worker: KeyPair) -> None:
    rng = random.Random(1)
    for text in ["", "x", SESSION, "пароль 🤖 € é\0\n", "a" * 100_000]:
        assert open_sealed(worker, seal(worker.public_key, text)) == text
    for _ in range(100):
        text, context = random_text(rng), random_text(rng, 40)
        token = seal(worker.public_key, text, context=context)
        assert open_sealed(worker, token, context=context) == text


def test_wire_format_is_versioned_urlsafe_text(worker: KeyPair) -> None:
    token = seal(worker.public_key, SESSION, context="account:17:session")
    assert token.startswith("s1.")
    assert set(token[3:]) <= set(ALPHABET)
    assert len(unb64(token[3:])) == 32 + len(SESSION) + 16  # ephemeral public || ciphertext || tag
    assert json.loads(json.dumps(token)) == token
    assert is_sealed(token)
    assert is_sealed(seal(worker.public_key, ""))
    for value in ["", SESSION, "s1.", "s1.abc", "gAAAAABl" + "x" * 100, "s1." + "a" * 63, "s1." + "!" * 80, 5, None]:
        assert not is_sealed(value)
    assert is_sealed("s2." + "a" * 80)  # a newer version is still not plaintext


def test_seals_of_the_same_text_differ(worker: KeyPair) -> None:
    tokens = {seal(worker.public_key, SESSION, context="c") for _ in range(50)}
    assert len(tokens) == 50
    assert len({t[3:46] for t in tokens}) == 50  # a fresh ephemeral key each time


def test_another_workers_key_cannot_open(worker: KeyPair) -> None:
    token = seal(worker.public_key, SESSION)
    for _ in range(20):
        with pytest.raises(SealError, match="another key"):
            open_sealed(KeyPair.generate(), token)


def test_tampering_any_byte_fails(worker: KeyPair) -> None:
    token = seal(worker.public_key, "api-hash-0123456789abcdef", context="account:1:api_hash")
    length = len(unb64(token[3:]))
    rng = random.Random(2)
    for position in range(length):
        with pytest.raises(SealError):
            open_sealed(worker, tampered(token, position, 1 << rng.randrange(8)), context="account:1:api_hash")
    for cut in range(len(token) - 1):  # every truncation
        with pytest.raises(SealError):
            open_sealed(worker, token[:cut], context="account:1:api_hash")
    for char_position in range(3, len(token)):  # every one-character substitution of the text
        for replacement in "A_-9":
            if token[char_position] != replacement:
                bad = token[:char_position] + replacement + token[char_position + 1 :]
                with pytest.raises(SealError):
                    open_sealed(worker, bad, context="account:1:api_hash")
    with pytest.raises(SealError):
        open_sealed(worker, token + "A", context="account:1:api_hash")
    assert open_sealed(worker, token, context="account:1:api_hash") == "api-hash-0123456789abcdef"


def test_wrong_context_fails(worker: KeyPair) -> None:
    token = seal(worker.public_key, SESSION, context="account:17:session")
    for context in ["", "account:18:session", "account:17:api_hash", "account:17:session ", "ACCOUNT:17:SESSION"]:
        with pytest.raises(SealError, match="another context"):
            open_sealed(worker, token, context=context)
    with pytest.raises(SealError):
        open_sealed(worker, seal(worker.public_key, SESSION), context="account:17:session")


def test_unknown_version_and_malformed_input_fail(worker: KeyPair) -> None:
    token = seal(worker.public_key, SESSION)
    with pytest.raises(SealError, match="unknown version s2"):
        open_sealed(worker, "s2." + token[3:])
    with pytest.raises(SealError, match="unknown version s10"):
        open_sealed(worker, "s10." + token[3:])
    for bad in ["", SESSION, "s1", "s1.", "s1.AAAA", "s1." + token[3:] + "=", " " + token, token + "\n", "s1.a+b/"]:
        with pytest.raises(SealError):
            open_sealed(worker, bad)
    with pytest.raises(SealError, match="not a sealed value"):
        open_sealed(worker, None)  # type: ignore[arg-type]
    low_order = "s1." + b64(bytes(32) + bytes(16))  # the all-zero point as the ephemeral key
    with pytest.raises(SealError):
        open_sealed(worker, low_order)


def test_public_keys_parse_strictly(worker: KeyPair) -> None:
    assert len(worker.public_key) == 43
    assert parse_public_key(worker.public_key) == worker.public_key
    assert parse_public_key(f"  {worker.public_key}\n") == worker.public_key
    raw = unb64(worker.public_key)
    bad = [
        "",
        "abc",
        worker.public_key + "=",
        worker.public_key[:-1],
        worker.public_key + "AAAA",
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet (+ /)
        b64(raw[:31]),
        b64(bytes(32)),  # low-order points
        b64(b"\x01" + bytes(31)),
        worker.public_key[:-1] + ALPHABET[ALPHABET.index(worker.public_key[-1]) | 1],  # same bytes, non-canonical
    ]
    for text in bad:
        with pytest.raises(ValueError, match="public key"):
            parse_public_key(text)
    with pytest.raises(ValueError, match="public key"):
        parse_public_key(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="public key"):
        seal("not-a-key", "secret")
    assert open_sealed(worker, seal(f" {worker.public_key} ", "x")) == "x"


def test_fingerprints_are_stable_and_short(worker: KeyPair) -> None:
    pair = KeyPair.from_private_bytes(bytes(range(32)))
    assert pair.fingerprint == KeyPair.from_private_bytes(bytes(range(32))).fingerprint
    assert pair.fingerprint == fingerprint(pair.public_key)
    assert len(pair.fingerprint) == 16
    assert int(pair.fingerprint, 16) >= 0
    assert pair.fingerprint != worker.fingerprint
    assert pair.public_key == "j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8"  # X25519 of bytes 0..31, fixed forever
    assert pair.fingerprint == "eedd883da0a94515"
    assert repr(pair) == f"KeyPair(fingerprint={pair.fingerprint})"


def test_private_bytes_round_trip(worker: KeyPair) -> None:
    again = KeyPair.from_private_bytes(worker.private_bytes())
    assert again.public_key == worker.public_key
    assert open_sealed(again, seal(worker.public_key, SESSION)) == SESSION
    for size in (0, 31, 33):
        with pytest.raises(ValueError, match="32 bytes"):
            KeyPair.from_private_bytes(bytes(size))


def test_derive_is_deterministic_and_separated() -> None:
    control = KeyPair.derive("secret-key-1", "control-plane")
    assert KeyPair.derive("secret-key-1", "control-plane").private_bytes() == control.private_bytes()
    others = [
        KeyPair.derive("secret-key-1", "control-plane-2"),
        KeyPair.derive("secret-key-2", "control-plane"),
        KeyPair.derive("secret-key-1", "worker"),
    ]
    assert len({control.public_key, *(o.public_key for o in others)}) == 4
    token = seal(control.public_key, SESSION, context="account:3:session")
    assert open_sealed(KeyPair.derive("secret-key-1", "control-plane"), token, context="account:3:session") == SESSION
    for other in others:
        with pytest.raises(SealError):
            open_sealed(other, token, context="account:3:session")
    for secret, purpose in [("", "p"), ("s", "")]:
        with pytest.raises(ValueError, match="non-empty"):
            KeyPair.derive(secret, purpose)


def test_load_or_create_creates_0600_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    created = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == b64(created.private_bytes()) + "\n"
    assert load_or_create(path).private_bytes() == created.private_bytes()
    assert load_or_create(str(path)).public_key == created.public_key  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == ["worker.key"]  # no temporary file left


def test_load_or_create_makes_a_missing_parent_0700(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "worker.key"
    created = load_or_create(path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).public_key == created.public_key


def test_load_or_create_races_to_one_key(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create(path).public_key)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1


def test_load_or_create_refuses_unsafe_or_malformed_files(tmp_path: Path) -> None:
    good = KeyPair.generate()
    path = tmp_path / "worker.key"
    path.write_text(b64(good.private_bytes()) + "\n")
    for mode in (0o644, 0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(KeyFileError, match=f"group or others \\(mode {mode:04o}\\)"):
            load_or_create(path)
        assert path.read_text() == b64(good.private_bytes()) + "\n"  # left as it was
    path.chmod(0o400)
    assert load_or_create(path).public_key == good.public_key
    path.chmod(0o600)
    for content in [b"", b"short", b"!" * 43, b64(bytes(31)).encode(), b"\xff" * 32, base64.b64encode(bytes(32))]:
        path.write_bytes(content)
        with pytest.raises(KeyFileError, match="malformed"):
            load_or_create(path)
    directory = tmp_path / "a-directory"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_or_create(directory)
    fifo = tmp_path / "a-fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_or_create(fifo)


def test_no_key_material_in_errors(tmp_path: Path, worker: KeyPair) -> None:
    private = b64(worker.private_bytes())
    errors: list[Exception] = []
    path = tmp_path / "worker.key"
    path.write_text(private + "\n")
    path.chmod(0o644)
    with pytest.raises(KeyFileError) as info:
        load_or_create(path)
    errors.append(info.value)
    path.chmod(0o600)
    path.write_text(private[:-2] + "!!\n")  # almost the key
    with pytest.raises(KeyFileError) as info:
        load_or_create(path)
    errors.append(info.value)
    token = seal(worker.public_key, SESSION, context="account:17:session")
    for pair, context, bad in [
        (KeyPair.generate(), "account:17:session", token),
        (worker, "account:18:session", token),
        (worker, "account:17:session", tampered(token, 40)),
        (worker, "account:17:session", "s9." + token[3:]),
        (worker, "account:17:session", token[:50]),
    ]:
        with pytest.raises(SealError) as info:
            open_sealed(pair, bad, context=context)
        errors.append(info.value)
    with pytest.raises(ValueError) as info:
        seal(private + "!", SESSION)  # a (mangled) private key pasted where a public key goes
    errors.append(info.value)
    for error in errors:
        text = f"{error!s} {error!r}"
        assert private not in text
        assert private[:-2] not in text
        assert SESSION[:20] not in text
        assert "\n" not in str(error)
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__  # no chained error to leak from
    assert private not in repr(worker)


def test_load_or_create_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(KeyFileError, match="dangling symlink"):
        load_or_create(path)
