"""What people type into the board, made to say what it shows: pure functions, no database.

- `clean` is applied before any rule and before storing: canonical composition (NFC), no control or format
  characters (zero-width spaces, word joiners, bidi overrides, soft hyphens…) except the zero-width joiner
  inside an emoji sequence, no private-use or unassigned code points, tabs as spaces, and — for one-line
  fields — no line breaks. Text stays as the person wrote it otherwise (NFC keeps `м²` and `½`).
- `for_filters` is what the spam filter reads: the text cleaned (whether or not its caller did) in
  compatibility form (NFKC: fullwidth `ｔ.ｍｅ` reads `t.me`), with look-alike Cyrillic letters read as Latin
  inside mixed-script words (`t.mе` with a Cyrillic `е` reads `t.me`) and dot-like characters read as a dot.
- `has_visible` tells whether anything would be seen at all (Hangul fillers and the braille blank are letters
  and symbols that draw nothing); `fold` and `search_terms` give the form search compares: NFKC,
  case-folded, `ё` as `е`.
"""

from __future__ import annotations

import re
import unicodedata

# Categories never kept: controls, format characters, surrogates, private use, unassigned.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_ZWJ = "\u200d"
# Letters and symbols that draw nothing: a title of them alone is a blank card.
_DRAWS_NOTHING = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_LINE_BREAKS = {"\r\n": "\n", "\r": "\n", "\u2028": "\n", "\u2029": "\n\n", "\x85": "\n"}
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[^\S\n]+")
# Cyrillic letters that look like Latin ones (lower and upper case).
_HOMOGLYPHS = str.maketrans(
    "авсеԁһіјкӏмпорԛѕтսԝхуАВСЕНІЈКМОРЅТХУ",
    "abcedhijklmnopqstuwxyABCEHIJKMOPSTXY",
)
_DOTS = str.maketrans({"\u3002": ".", "\uff61": ".", "\u2024": ".", "\ufe52": ".", "\u00b7": ".", "\u2027": "."})
_WORDISH = re.compile(r"[\w.@/\-]+")
_LATIN = re.compile(r"[a-zA-Z]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_TERM = re.compile(r"[^\W_]+")
MAX_TERMS = 8
MAX_TERM_LENGTH = 40


def _emoji_side(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk") or ch == "\ufe0f" or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _keep(text: str, index: int) -> bool:
    ch = text[index]
    category = unicodedata.category(ch)
    if ch == "\n":
        return True
    if ch == _ZWJ:  # 👨‍👩‍👧 is three emoji joined: keep the joiner there, and only there
        return 0 < index < len(text) - 1 and _emoji_side(text[index - 1]) and _emoji_side(text[index + 1])
    return category not in _DROPPED


def clean(value: str, *, multiline: bool = True) -> str:
    """`value` without what hides or reorders text, whitespace tidied, ends stripped (see the module's doc)."""
    text = unicodedata.normalize("NFC", value)
    for old, new in _LINE_BREAKS.items():
        text = text.replace(old, new)
    text = text.replace("\t", " ")
    text = "".join(ch for index, ch in enumerate(text) if _keep(text, index))
    if not multiline:
        text = text.replace("\n", " ")
    lines = [_SPACE_RUNS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def has_visible(text: str) -> bool:
    """Whether some letter, digit, symbol or punctuation would show (not only spaces and invisible marks)."""
    return any(unicodedata.category(ch)[0] in "LNSP" and ch not in _DRAWS_NOTHING for ch in text)


def _deconfuse(match: re.Match[str]) -> str:
    word = match.group(0)
    if _LATIN.search(word) and _CYRILLIC.search(word):
        return word.translate(_HOMOGLYPHS)
    return word


def for_filters(text: str) -> str:
    """The text as a filter must read it: compatibility forms folded, look-alikes resolved (see the module)."""
    compatible = unicodedata.normalize("NFKC", clean(text)).translate(_DOTS)
    return _WORDISH.sub(_deconfuse, compatible)


def fold(text: str) -> str:
    """The form search compares: compatibility forms, case folded, `ё` read as `е`."""
    return unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")


def search_terms(query: str) -> list[str]:
    """The words of a search, folded (letters and digits only; at most MAX_TERMS, each cut to MAX_TERM_LENGTH)."""
    return [term[:MAX_TERM_LENGTH] for term in _TERM.findall(fold(query))[:MAX_TERMS]]
