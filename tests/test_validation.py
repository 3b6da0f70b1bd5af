"""What admins type: phones, API credentials, login codes, proxies; and how secrets are masked."""

from __future__ import annotations

import pytest

from common.crypto import SecretBox, SecretError, mask_secret
from common.validation import (
    InvalidValue,
    mask_phone,
    normalize_login_code,
    normalize_phone,
    parse_proxy,
    validate_api_hash,
    validate_api_id,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 999 123-45-67", "+79991234567"),
        ("79991234567", "+79991234567"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+1 (555) 000-1111", "+15550001111"),
    ],
)
def test_phones_are_normalised_to_e164(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "+0123456789", "12345", "+7999123456789012", "+7 999 abc 45 67"])
def test_wrong_phones_are_refused_with_the_format(raw: str) -> None:
    with pytest.raises(InvalidValue, match=r"use international format, e.g. \+79991234567"):
        normalize_phone(raw)


def test_phones_are_masked_for_display() -> None:
    assert mask_phone("+79991234567") == "+7 *** ***-45-67"
    assert mask_phone("+442079460958") == "+44 *** ***-09-58"


@pytest.mark.parametrize("raw", ["abc", "-5", "0", "12.5", "99999999999", ""])
def test_api_id_must_be_a_number(raw: str) -> None:
    with pytest.raises(InvalidValue, match="invalid API ID"):
        validate_api_id(raw)
    assert validate_api_id(" 123456 ") == 123456


@pytest.mark.parametrize("raw", ["xyz", "0123456789abcdef", "0123456789abcdef0123456789abcdeg", ""])
def test_api_hash_must_be_32_hex(raw: str) -> None:
    with pytest.raises(InvalidValue, match="32 hexadecimal characters"):
        validate_api_hash(raw)
    assert validate_api_hash("0123456789ABCDEF0123456789abcdef") == "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("raw", ["1 2 3 4 5", "1-2-3-4-5", "12345", " 1.2.3.4.5 ", "code: 1 2 3 4 5 6"])
def test_login_codes_are_accepted_with_any_separators(raw: str) -> None:
    assert normalize_login_code(raw) in ("12345", "123456")


@pytest.mark.parametrize("raw", ["1234", "1234567", "abcde", ""])
def test_wrong_codes_say_how_to_type_them(raw: str) -> None:
    with pytest.raises(InvalidValue, match="type it with spaces, like 1 2 3 4 5"):
        normalize_login_code(raw)


def test_proxies_parse_and_mask_their_credentials() -> None:
    socks = parse_proxy("socks5://bob:s3cret@127.0.0.1:1080")
    assert (socks.kind, socks.host, socks.port, socks.username, socks.password) == (
        "socks5",
        "127.0.0.1",
        1080,
        "bob",
        "s3cret",
    )
    assert socks.masked() == "socks5://***@127.0.0.1:1080" and "s3cret" not in socks.masked()
    assert parse_proxy(socks.url()) == socks
    assert parse_proxy("http://10.0.0.1:3128").kind == "http"
    secret = "ee" + "0123456789abcdef" * 2
    mtproxy = parse_proxy(f"tg://proxy?server=127.0.0.1&port=443&secret={secret}")
    assert (mtproxy.kind, mtproxy.password) == ("mtproxy", secret)
    assert parse_proxy(mtproxy.url()) == mtproxy
    for bad in ("ftp://x:1", "socks5://host", "socks5://host:99999", "nonsense", "mtproxy://short@h:443"):
        with pytest.raises(InvalidValue):
            parse_proxy(bad)


def test_secrets_round_trip_and_fail_clearly_under_another_key() -> None:
    box = SecretBox("k" * 40)
    token = box.encrypt("1BVtsOK8Bu...session")
    assert "session" not in token and box.decrypt(token) == "1BVtsOK8Bu...session"
    with pytest.raises(SecretError, match="another SECRET_KEY"):
        SecretBox("z" * 40).decrypt(token)
    with pytest.raises(SecretError):
        box.decrypt("garbage")
    assert mask_secret("0123456789abcdef") == "0123…cdef"
