"""Free text that leaves a worker (status details, error descriptions) made short, readable and safe.

Error texts from Telegram's client library can carry raw protocol bytes, the account's phone number and its
owner's name. Everything a worker reports goes through `safe_detail`: bytes literals dropped, control and
bidi characters removed, phone-like numbers masked, length capped.
"""

from __future__ import annotations

import re
import unicodedata

from common.validation import mask_phone

MAX_DETAIL = 200
_BYTES_LITERAL = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.DOTALL)
_ESCAPES = re.compile(r"\\x[0-9a-fA-F]{2}")
# A run of 7-15 digits, optionally with a leading + and spaces, dashes, dots or brackets between them.
_PHONE_LIKE = re.compile(r"(?<![\w+])\+?[0-9](?:[\s\-.()]{0,2}[0-9]){6,14}(?![0-9])", re.ASCII)


def _visible(text: str) -> str:
    return "".join(" " if unicodedata.category(ch)[0] in ("C", "Z") and ch != " " else ch for ch in text)


def _mask(match: re.Match[str]) -> str:
    return mask_phone("+" + re.sub(r"[^0-9]", "", match.group(0)))


def safe_detail(text: str, limit: int = MAX_DETAIL) -> str:
    """`text` without raw bytes, control or bidi characters and phone numbers, at most `limit` characters."""
    cleaned = _BYTES_LITERAL.sub("<bytes>", str(text))
    cleaned = _ESCAPES.sub("", cleaned)
    cleaned = _PHONE_LIKE.sub(_mask, _visible(cleaned))
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned
