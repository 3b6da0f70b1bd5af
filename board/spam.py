"""The board's spam filter: pure functions over a text and what the same person wrote recently.

An ad or a first message is refused, with a reason the user is shown, when it carries a link, a stop word
from BOARD_STOP_WORDS, one character or word repeated over and over, or when it is nearly the same as
several of the sender's recent texts (a flood of similar texts). The rules read the text as `board.text`
resolves it for filters: fullwidth forms and look-alike letters do not hide a link or a stop word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from difflib import SequenceMatcher

from board.text import fold, for_filters

# Links: schemes, www., t.me / telegram.me, @usernames, and bare domains with a common top-level domain.
_LINK = re.compile(
    r"(?:https?://|tg://|www\.|\b(?:t|telegram)\.me/|(?<![\w.])@[A-Za-z][A-Za-z0-9_]{4,}"
    r"|\b[a-z0-9-]{2,}\.(?:com|net|org|ru|io|me|kz|ua|by|info|biz|xyz|site|online|shop|top|link|ly|gg)\b)",
    re.IGNORECASE,
)
_REPEATED_CHAR = re.compile(r"(.)\1{9,}", re.DOTALL)
SIMILAR_RATIO = 0.85
SIMILAR_LIMIT = 2  # this many near-identical recent texts, and the next one is a flood


class SpamReason:
    LINK = "link"
    STOP_WORD = "stop_word"
    REPEATED = "repeated"
    FLOOD = "flood"


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", fold(text)).strip()


def _repeats_itself(text: str) -> bool:
    if _REPEATED_CHAR.search(text):
        return True
    words = re.findall(r"\w+", text.casefold())
    return len(words) >= 6 and len(set(words)) <= len(words) // 4


def spam_reason(text: str, stop_words: Iterable[str] = (), recent: Iterable[str] = ()) -> str | None:
    """Why `text` is spam (a `SpamReason`), or None. `recent`: the same sender's recent texts."""
    text = for_filters(text)
    if _LINK.search(text):
        return SpamReason.LINK
    folded = normalized(text)
    words = set(re.findall(r"\w+", folded))
    for stop in stop_words:
        stop = fold(stop).strip()
        if stop and (stop in words or (" " in stop and stop in folded)):
            return SpamReason.STOP_WORD
    if _repeats_itself(text):
        return SpamReason.REPEATED
    similar = 0
    for earlier in recent:
        if SequenceMatcher(None, folded, normalized(earlier)).ratio() >= SIMILAR_RATIO:
            similar += 1
            if similar >= SIMILAR_LIMIT:
                return SpamReason.FLOOD
    return None
