"""Validation of what admins type: phones, API credentials, login codes, proxies.

Each function returns the normalised value or raises `InvalidValue` whose message can be shown as is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError


class InvalidValue(ValueError):
    """Bad input; the message says what is expected, `code` which input (front ends may translate it)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


# Control, format (bidi overrides, zero-width), surrogate, private-use, unassigned and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Row ids are INTEGER on PostgreSQL: a larger id cannot exist, and must not reach a database driver.
MAX_ROW_ID = 2**31 - 1
_ASCII_NUMBER = re.compile(r"[0-9]{1,18}")


def is_ascii_number(text: str) -> bool:
    """Only the digits 0-9 (`١٢٣` and `²` are digits to Python, not to us), at most 18 of them."""
    return _ASCII_NUMBER.fullmatch(text) is not None


def has_unsafe_characters(text: str) -> bool:
    """Whether `text` holds characters that can hide or reorder what a terminal or chat shows."""
    return any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in text)


def printable(text: str) -> str:
    """`text` with every such character shown as its escape (`\\u202e`), safe to print anywhere."""
    if not has_unsafe_characters(text):
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
        for ch in text
    )


def normalize_phone(raw: str) -> str:
    """E.164: `+` and 7-15 digits; spaces, dashes, dots and brackets are ignored, a leading 00 or 8 is not guessed."""
    text = str(raw).strip()
    compact = re.sub(r"[\s\-().]", "", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        compact = "+" + compact
    if not re.fullmatch(r"\+[1-9]\d{6,14}", compact):
        raise InvalidValue(f"invalid phone number {text!r}: use international format, e.g. +79991234567", "phone")
    return compact


def mask_phone(phone: str) -> str:
    """`+7 *** ***-12-34`: the country code and the last four digits."""
    digits = phone.lstrip("+")
    if len(digits) < 7:
        return "+" + "*" * len(digits)
    country = digits[: len(digits) - 10] if len(digits) > 10 else digits[:1]
    tail = digits[-4:]
    return f"+{country} *** ***-{tail[:2]}-{tail[2:]}"


def validate_api_id(raw: object) -> int:
    text = str(raw).strip()
    if not is_ascii_number(text) or not 1 <= int(text) <= 2**31 - 1:
        raise InvalidValue(
            f"invalid API ID '{printable(text)}': it is a number from my.telegram.org, e.g. 123456", "api_id"
        )
    return int(text)


def validate_api_hash(raw: str) -> str:
    text = str(raw).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise InvalidValue("invalid API hash: it is 32 hexadecimal characters from my.telegram.org", "api_hash")
    return text


def normalize_login_code(raw: str) -> str:
    """Digits only, whatever separated them (`1 2 3 4 5`, `1-2-3-4-5`): Telegram voids codes sent verbatim."""
    digits = re.sub(r"\D", "", str(raw))
    if not 5 <= len(digits) <= 6:
        raise InvalidValue("the login code is 5 or 6 digits; type it with spaces, like 1 2 3 4 5", "login_code")
    return digits


@dataclass(frozen=True)
class ProxySpec:
    """A per-account proxy: socks5, socks4, http, or an MTProxy (secret in `password`)."""

    kind: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def url(self) -> str:
        if self.kind == "mtproxy":
            return f"mtproxy://{self.password}@{self.host}:{self.port}"
        auth = ""
        if self.username:
            auth = self.username + (f":{self.password}" if self.password else "") + "@"
        return f"{self.kind}://{auth}{self.host}:{self.port}"

    def masked(self) -> str:
        if self.kind == "mtproxy":
            return f"mtproxy://***@{self.host}:{self.port}"
        return f"{self.kind}://{'***@' if self.username else ''}{self.host}:{self.port}"


def parse_proxy(raw: str) -> ProxySpec:
    """socks5://user:pass@host:port, socks4://host:port, http://host:port, mtproxy://SECRET@host:port or
    tg://proxy?server=host&port=443&secret=SECRET."""
    text = str(raw).strip()
    error = InvalidValue(
        "invalid proxy: use socks5://user:pass@host:port, http://host:port or mtproxy://secret@host:port"
    )
    try:
        parts = urlsplit(text)
        if (parts.scheme in ("tg", "https") and parts.path.strip("/") == "proxy") or parts.netloc == "proxy":
            query = parse_qs(parts.query)
            host, port, secret = query["server"][0], int(query["port"][0]), query["secret"][0]
            return _checked(ProxySpec("mtproxy", host, port, None, secret), error)
        kind = {"socks5": "socks5", "socks5h": "socks5", "socks4": "socks4", "http": "http", "mtproxy": "mtproxy"}
        if parts.scheme not in kind or not parts.hostname or not parts.port:
            raise error
        if kind[parts.scheme] == "mtproxy":
            secret = unquote(parts.username or "")
            return _checked(ProxySpec("mtproxy", parts.hostname, parts.port, None, secret), error)
        return _checked(
            ProxySpec(
                kind[parts.scheme],
                parts.hostname,
                parts.port,
                unquote(parts.username) if parts.username else None,
                unquote(parts.password) if parts.password else None,
            ),
            error,
        )
    except (KeyError, IndexError, ValueError) as caught:
        if isinstance(caught, InvalidValue):
            raise
        raise error from None


def _checked(spec: ProxySpec, error: InvalidValue) -> ProxySpec:
    if not 1 <= spec.port <= 65535:
        raise error
    if spec.kind == "mtproxy" and not re.fullmatch(
        r"(dd|ee)?[0-9a-fA-F]{32}([0-9a-fA-F]*)|[A-Za-z0-9_\-=]{16,}", spec.password or ""
    ):
        raise InvalidValue("invalid MTProxy secret: expected the hex or base64 secret from the proxy link")
    return spec


def validation_message(error: ValidationError) -> str:
    """One readable line from a pydantic error, without echoing input values (they may be secrets)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item.get("loc", ())) or "payload"
        parts.append(f"{where}: {re.sub(r'^Value error, ', '', item.get('msg', 'invalid'))}")
    return "; ".join(parts)
