"""Ads: posting (within BOARD_ADS_PER_USER however requests interleave), browsing with the database's own
full-text search, opening, closing and reopening one's own, and expiry. Status changes go through
`board.services.ad_states`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, literal_column, select, text, update
from sqlalchemy.orm import Session

from board import text as board_text
from board.errors import conflict, forbidden, invalid, not_found, too_many
from board.services import ad_states
from board.services.ad_states import LIVE, REOPEN_WINDOW, Actor
from board.services.base import PUBLIC_ID_MAX, ServiceBase, clean_field, new_public_id
from board.spam import spam_reason
from board.views import AdsPage, AdView, UserRef
from database.board_models import AD_TEXT_MAX, TITLE_MAX, AdStatus, BoardAd, BoardAdEvent, BoardInvite

CATEGORIES = ("services", "jobs", "sale", "housing", "dating", "other")
PER_PAGE = 20
RECENT_TEXTS = 10
EXPIRY_SWEEP = timedelta(seconds=60)
# What anyone may open; reported and hidden ads are shown to their authors only.
PUBLIC = (AdStatus.OPEN.value, AdStatus.CLOSED.value, AdStatus.EXPIRED.value)


def search_condition(session: Session, query: str) -> ColumnElement[bool] | None:
    """The ads matching every word of `query` (as a prefix), by the database's full-text index; None when the
    query has no words."""
    terms = board_text.search_terms(query)
    if not terms:
        return None
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join(f'"{term}"*' for term in terms)  # terms are letters and digits only
        matching = text("SELECT rowid FROM board_ads_fts WHERE board_ads_fts MATCH :match").bindparams(match=match)
        return BoardAd.id.in_(matching)
    query_text = " & ".join(f"{term}:*" for term in terms)
    vector = func.to_tsvector(literal_column("'simple'::regconfig"), BoardAd.search_text)
    return vector.op("@@")(func.to_tsquery(literal_column("'simple'::regconfig"), query_text))


class AdsService(ServiceBase):
    def expire_ads(self) -> int:
        """Mark open ads past their time as expired (so listing filters on the status alone, from its index)."""
        now = self.clock()
        with self._tx() as session:
            expired = session.scalars(
                update(BoardAd)
                .where(BoardAd.status == AdStatus.OPEN.value, BoardAd.expires_at <= now)
                .values(status=AdStatus.EXPIRED.value)
                .returning(BoardAd.id)
            ).all()
            if expired:
                session.execute(
                    BoardAdEvent.__table__.insert(),
                    [
                        {"ad_id": ad_id, "from_status": "open", "to_status": "expired", "actor": "board",
                         "reason": "time", "created_at": now}
                        for ad_id in expired
                    ],
                )  # fmt: skip
        self._expired_at = now
        return len(expired)

    def list_ads(self, viewer: UserRef | None, q: str = "", category: str | None = None, page: int = 0) -> AdsPage:
        if category is not None and category not in CATEGORIES:
            raise invalid("bad_category", field="category")
        q = board_text.clean(q, multiline=False) if isinstance(q, str) else ""
        if len(q) > TITLE_MAX:
            raise invalid("query_too_long", field="q", limit=TITLE_MAX)
        page = max(0, min(int(page), 10_000))
        now = self.clock()
        if self._expired_at is None or now - self._expired_at > EXPIRY_SWEEP:
            self.expire_ads()  # the board process also sweeps every minute; this keeps any other caller right
        with self.sessions() as session:
            # Open by status: an ad that expired since the last sweep (under a minute ago) is dropped below.
            conditions: list[ColumnElement[bool]] = [BoardAd.status == AdStatus.OPEN.value]
            if category:
                conditions.append(BoardAd.category == category)
            found = search_condition(session, q)
            if found is not None:
                conditions.append(found)
            total = session.scalar(select(func.count()).select_from(BoardAd).where(*conditions)) or 0
            rows = session.scalars(
                select(BoardAd)
                .where(*conditions)
                .order_by(BoardAd.created_at.desc(), BoardAd.id.desc())
                .offset(page * PER_PAGE)
                .limit(PER_PAGE)
            ).all()
            rows = [r for r in rows if r.expires_at > now]
            invited = self._invited(session, viewer, [r.id for r in rows])
            views = [self._ad_view(r, viewer, r.id in invited) for r in rows]
        return AdsPage(views, page, max(1, -(-total // PER_PAGE)), total)

    def _invited(self, session: Session, viewer: UserRef | None, ad_ids: list[int]) -> set[int]:
        if viewer is None or not ad_ids:
            return set()
        return set(
            session.scalars(
                select(BoardInvite.ad_id).where(BoardInvite.sender_id == viewer.id, BoardInvite.ad_id.in_(ad_ids))
            )
        )

    def _reopen_until(self, ad: BoardAd, now: datetime) -> datetime | None:
        if ad.status != AdStatus.CLOSED.value or ad.closed_at is None or ad.expires_at <= now:
            return None
        if ad.closed_from not in (AdStatus.OPEN.value, AdStatus.REPORTED.value, AdStatus.HIDDEN.value):
            return None
        until = ad.closed_at + REOPEN_WINDOW
        return until if until > now else None

    def _ad_view(self, ad: BoardAd, viewer: UserRef | None, invited: bool) -> AdView:
        now = self.clock()
        status = ad.status
        if status == AdStatus.OPEN.value and ad.expires_at <= now:
            status = AdStatus.EXPIRED.value
        mine = viewer is not None and ad.author_id == viewer.id
        return AdView(
            ad.public_id,
            ad.title,
            ad.text,
            ad.category,
            status,
            ad.created_at,
            ad.expires_at,
            mine,
            invited,
            ad.closed_at,
            self._reopen_until(ad, now) if mine else None,
        )

    def _recent_texts(self, session: Session, user_id: int) -> list[str]:
        since = self.clock() - timedelta(days=1)
        ads = session.scalars(
            select(BoardAd.text)
            .where(BoardAd.author_id == user_id, BoardAd.created_at > since)
            .order_by(BoardAd.id.desc())
            .limit(RECENT_TEXTS)
        ).all()
        invites = session.scalars(
            select(BoardInvite.message)
            .where(BoardInvite.sender_id == user_id, BoardInvite.created_at > since)
            .order_by(BoardInvite.id.desc())
            .limit(RECENT_TEXTS)
        ).all()
        return [*ads, *invites]

    def _check_spam(self, session: Session, user_id: int, *texts: str, field: str | None = None) -> None:
        recent = self._recent_texts(session, user_id)
        for body in texts:
            reason = spam_reason(body, self.limits.stop_words, recent)
            if reason is not None:
                raise invalid(f"spam_{reason}", field=field)

    def _live_ads(self, session: Session, user_id: int, now: datetime) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(BoardAd)
                .where(BoardAd.author_id == user_id, BoardAd.status.in_(LIVE), BoardAd.expires_at > now)
            )
            or 0
        )

    def create_ad(self, author: UserRef, title: object, text: object, category: object) -> AdView:
        title_text = clean_field(title, TITLE_MAX, "title", multiline=False)
        body = clean_field(text, AD_TEXT_MAX, "text")
        if category not in CATEGORIES:
            raise invalid("bad_category", field="category")
        now = self.clock()
        with self._tx() as session:
            user = self._lock_user(session, author.id)
            if self._live_ads(session, user.id, now) >= self.limits.ads_per_user:
                raise too_many("ad_limit", limit=self.limits.ads_per_user)
            self._check_spam(session, user.id, f"{title_text}\n{body}")
            ad = BoardAd(
                public_id=new_public_id(),
                author_id=user.id,
                title=title_text,
                text=body,
                category=str(category),
                search_text=board_text.fold(f"{title_text}\n{body}"),
                status=AdStatus.OPEN.value,
                report_count=0,
                report_weight=0,
                created_at=now,
                expires_at=now + timedelta(days=self.limits.ad_days),
                closed_from="",
            )
            session.add(ad)
            session.flush()
            return self._ad_view(ad, author, False)

    def _ad(self, session: Session, public_id: object) -> BoardAd:
        if not isinstance(public_id, str) or len(public_id) > PUBLIC_ID_MAX:
            raise not_found("ad")
        ad = session.scalar(select(BoardAd).where(BoardAd.public_id == public_id))
        if ad is None:
            raise not_found("ad")
        return ad

    def _visible_ad(self, session: Session, viewer: UserRef | None, public_id: object) -> BoardAd:
        """The ad as `viewer` may see it: one hidden (by reports or a moderator) is not found, but by its author."""
        ad = self._ad(session, public_id)
        if ad.status not in PUBLIC and (viewer is None or ad.author_id != viewer.id):
            raise not_found("ad")
        return ad

    def get_ad(self, viewer: UserRef | None, public_id: str) -> AdView:
        with self.sessions() as session:
            ad = self._visible_ad(session, viewer, public_id)
            return self._ad_view(ad, viewer, ad.id in self._invited(session, viewer, [ad.id]))

    def my_ads(self, viewer: UserRef) -> list[AdView]:
        with self.sessions() as session:
            rows = session.scalars(
                select(BoardAd).where(BoardAd.author_id == viewer.id).order_by(BoardAd.created_at.desc()).limit(100)
            ).all()
            return [self._ad_view(r, viewer, False) for r in rows]

    def _own_ad(self, session: Session, viewer: UserRef, public_id: str) -> BoardAd:
        ad = self._ad(session, public_id)
        if ad.author_id != viewer.id:
            raise forbidden("not_your_ad")
        self._active_user(session, viewer)
        return ad

    def close_ad(self, viewer: UserRef, public_id: str) -> AdView:
        """Close one's own ad (however it stands, but expired); closing a closed one changes nothing."""
        with self._tx() as session:
            ad = self._own_ad(session, viewer, public_id)
            ad_states.move(session, ad, AdStatus.CLOSED, Actor.AUTHOR, "author", self.clock())
            return self._ad_view(ad, viewer, False)

    def reopen_ad(self, viewer: UserRef, public_id: str) -> AdView:
        """Undo a close within REOPEN_WINDOW: the ad returns to where it was (counted against the ad limit)."""
        now = self.clock()
        with self._tx() as session:
            ad = self._own_ad(session, viewer, public_id)
            if self._reopen_until(ad, now) is None:
                raise conflict("reopen_expired", minutes=int(REOPEN_WINDOW.total_seconds() // 60))
            back = AdStatus(ad.closed_from)
            if back.value in LIVE:
                self._lock_user(session, viewer.id)
                if self._live_ads(session, viewer.id, now) >= self.limits.ads_per_user:
                    raise too_many("ad_limit", limit=self.limits.ads_per_user)
            if not ad_states.move(session, ad, back, Actor.AUTHOR, "author", now, "reopened"):
                raise conflict("reopen_expired", minutes=int(REOPEN_WINDOW.total_seconds() // 60))
            return self._ad_view(ad, viewer, False)
