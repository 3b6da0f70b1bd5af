"""An ad's status is a state machine, not flags: each change is one allowed transition, made by one kind of
actor, applied by a conditional UPDATE (so two requests cannot both make it) and recorded with who and why.

    open ──reports──► reported ──moderator reviews──► open
      │                   │
      ├──moderator hides──┴──► hidden ──moderator unhides──► open
      ├──author closes────────► closed ──author reopens (a short while)──► where it was
      └──time─────────────────► expired
A closed ad stays closed (its author may undo a mistaken close within `REOPEN_WINDOW`); an expired one is
done; only a moderator brings back what a moderator hid; dismissing a report never reopens a hidden or
closed ad.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from database.board_models import REASON_MAX, AdStatus, BoardAd, BoardAdEvent

REOPEN_WINDOW = timedelta(minutes=10)


class Actor(enum.StrEnum):
    AUTHOR = "author"
    BOARD = "board"  # the board itself: reports reaching the threshold, time running out
    MODERATOR = "moderator"


OPEN, CLOSED, REPORTED, HIDDEN, EXPIRED = (
    AdStatus.OPEN,
    AdStatus.CLOSED,
    AdStatus.REPORTED,
    AdStatus.HIDDEN,
    AdStatus.EXPIRED,
)

# (from, to) -> who may make the change
TRANSITIONS: dict[tuple[AdStatus, AdStatus], Actor] = {
    (OPEN, REPORTED): Actor.BOARD,
    (OPEN, EXPIRED): Actor.BOARD,
    (REPORTED, OPEN): Actor.MODERATOR,
    (OPEN, HIDDEN): Actor.MODERATOR,
    (REPORTED, HIDDEN): Actor.MODERATOR,
    (HIDDEN, OPEN): Actor.MODERATOR,
    (OPEN, CLOSED): Actor.AUTHOR,
    (REPORTED, CLOSED): Actor.AUTHOR,
    (HIDDEN, CLOSED): Actor.AUTHOR,
    (CLOSED, OPEN): Actor.AUTHOR,
    (CLOSED, REPORTED): Actor.AUTHOR,
    (CLOSED, HIDDEN): Actor.AUTHOR,
}
# What counts against BOARD_ADS_PER_USER: what the author still has up.
LIVE = (OPEN.value, REPORTED.value)


def sources(to: AdStatus, actor: Actor) -> tuple[str, ...]:
    """The statuses `actor` may move an ad from, to `to`."""
    return tuple(old.value for (old, new), who in TRANSITIONS.items() if new is to and who is actor)


def move(
    session: Session,
    ad: BoardAd,
    to: AdStatus,
    actor: Actor,
    who: str,
    now: datetime,
    reason: str = "",
    only_from: tuple[str, ...] | None = None,
) -> bool:
    """Move `ad` to `to` if its status (as the database has it now) allows `actor` to; record the change.

    `who` names the actor in the record (a moderator's name, "author", "board"); `only_from` narrows the
    allowed sources. False, changing nothing, when the ad is in no allowed status.
    """
    allowed = sources(to, actor)
    if only_from is not None:
        allowed = tuple(status for status in allowed if status in only_from)
    for old in allowed:
        values: dict[str, object] = {"status": to.value}
        if to is CLOSED:
            values.update(closed_at=now, closed_from=old)
        changed = session.execute(
            update(BoardAd).where(BoardAd.id == ad.id, BoardAd.status == old).values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if changed == 1:
            session.execute(
                insert(BoardAdEvent).values(
                    ad_id=ad.id,
                    from_status=old,
                    to_status=to.value,
                    actor=who[:64],
                    reason=reason[:REASON_MAX],
                    created_at=now,
                )
            )
            session.refresh(ad)
            return True
    return False
