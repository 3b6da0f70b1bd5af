"""The admins owners added (`Admin`): reading, adding, changing a role, removing. Functions take a
`Session` and never commit (the caller's unit of work owns the transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from database.models import Admin


def all_admins(session: Session) -> Sequence[Admin]:
    return session.scalars(select(Admin).order_by(Admin.tg_id)).all()


def find_admin(session: Session, tg_id: int) -> Admin | None:
    return session.get(Admin, tg_id)


def put_admin(session: Session, tg_id: int, role: str, name: str, added_by: str) -> Admin:
    admin = Admin(tg_id=tg_id, role=role, name=name, added_by=added_by)
    session.add(admin)
    session.flush()
    return admin


def delete_admin(session: Session, tg_id: int) -> bool:
    return bool(session.execute(delete(Admin).where(Admin.tg_id == tg_id)).rowcount)
