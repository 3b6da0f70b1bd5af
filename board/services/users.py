"""Board users: found (or created on first sight) by the Telegram id Telegram vouched for, named by opaque ids."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from board.services.base import ServiceBase, new_public_id, user_ref
from board.views import UserRef
from database.board_models import BoardUser


def language(code: str | None) -> str | None:
    """Telegram's `language_code` → "en" or "ru" (None: not said)."""
    if code is None:
        return None
    return "en" if code.lower().startswith("en") else "ru"


class UsersService(ServiceBase):
    def user(self, tg_id: int, lang: str | None = None) -> UserRef:
        """The board user Telegram knows as `tg_id` (created on first sight); `lang` updates their language."""
        chosen = language(lang)
        lookup = self._lookup(tg_id)
        with self._tx() as session:
            row = self._find(session, tg_id)
            if row is None:
                row = BoardUser(
                    public_id=new_public_id(),
                    tg_lookup=lookup,
                    tg_enc=self.box.encrypt(str(tg_id)),
                    lang=chosen or "ru",
                    created_at=self.clock(),
                )
                try:
                    with session.begin_nested():
                        session.add(row)
                except IntegrityError:  # created by a concurrent first update
                    row = session.scalar(select(BoardUser).where(BoardUser.tg_lookup == lookup))
                    assert row is not None
            elif chosen is not None and row.lang != chosen:
                row.lang = chosen
            return user_ref(row)

    def find_user(self, tg_id: int) -> UserRef | None:
        with self._tx() as session:
            row = self._find(session, tg_id)
            return None if row is None else user_ref(row)
