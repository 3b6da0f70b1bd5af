"""What the board refuses, by code: the bot and the Mini App show `texts` for the code in the user's language,
the HTTP API answers `{"error": code, "message": text}` with `status` (and `"field"` when one input is at
fault, so the page can show the text next to it)."""

from __future__ import annotations


class BoardError(Exception):
    """A refused action. `code` names it (and its text), `status` is its HTTP status, `values` fill the text,
    `field` names the input at fault, if one is."""

    def __init__(self, code: str, status: int = 400, field: str | None = None, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.field = field
        self.values = values


def not_found(what: str = "ad") -> BoardError:
    return BoardError(f"{what}_not_found", 404)


def invalid(code: str, field: str | None = None, **values: object) -> BoardError:
    return BoardError(code, 400, field, **values)


def forbidden(code: str, **values: object) -> BoardError:
    return BoardError(code, 403, **values)


def conflict(code: str, **values: object) -> BoardError:
    return BoardError(code, 409, **values)


def too_many(code: str, **values: object) -> BoardError:
    return BoardError(code, 429, **values)
