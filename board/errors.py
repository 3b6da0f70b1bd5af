"""What the board refuses, by code: the bot and the Mini App show `texts` for the code in the user's language,
the HTTP API answers `{"error": code, "message": text}` with `status`."""

from __future__ import annotations


class BoardError(Exception):
    """A refused action. `code` names it (and its text), `status` is its HTTP status, `values` fill the text."""

    def __init__(self, code: str, status: int = 400, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.values = values


def not_found(what: str = "ad") -> BoardError:
    return BoardError(f"{what}_not_found", 404)


def invalid(code: str, **values: object) -> BoardError:
    return BoardError(code, 400, **values)


def forbidden(code: str, **values: object) -> BoardError:
    return BoardError(code, 403, **values)


def conflict(code: str, **values: object) -> BoardError:
    return BoardError(code, 409, **values)


def too_many(code: str, **values: object) -> BoardError:
    return BoardError(code, 429, **values)
