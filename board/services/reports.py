"""Reports, made hard to turn into a weapon: BOARD_REPORTS_PER_DAY per person (however requests interleave), one
per person and thing, and weighed by who files them — a new account, or one whose reports keep being
dismissed, counts for less; an ad hides when its open reports weigh BOARD_HIDE_AFTER_REPORTS established,
trusted reporters. Someone whose reports are dismissed again and again is reported by the board itself.

A report on an ad answers exactly as opening the ad would: a hidden ad is not found. On an ad whose author
is banned, it says the matter is already handled.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from board import text as board_text
from board.errors import conflict, forbidden, invalid, not_found, too_many
from board.services import ad_states
from board.services.ad_states import Actor
from board.services.base import PUBLIC_ID_MAX, new_public_id
from board.services.chats import ChatsService
from board.views import ReportView, UserRef
from database.board_models import (
    REASON_MAX,
    AdStatus,
    BoardAd,
    BoardInvite,
    BoardMessage,
    BoardReport,
    BoardUser,
    InviteStatus,
    ReportStatus,
    ReportTarget,
)

NEW_ACCOUNT = timedelta(days=1)
YOUNG_ACCOUNT = timedelta(days=7)
FALSE_REPORTS_FLAG = 3  # dismissed reports that make the board report the reporter (again at 6, 9, …)
FULL_WEIGHT = 100


def report_weight(age: timedelta, upheld: int, dismissed: int) -> int:
    """What one report counts for, in hundredths: 25 from an account under a day old, 50 under a week, else
    100 — times how often this reporter was right, (upheld + 1) / (upheld + dismissed + 1)."""
    base = 25 if age < NEW_ACCOUNT else 50 if age < YOUNG_ACCOUNT else FULL_WEIGHT
    return round(base * (upheld + 1) / (upheld + dismissed + 1))


class ReportsService(ChatsService):
    def _track_record(self, session: Session, user_id: int) -> tuple[int, int]:
        """(upheld, dismissed): how this person's settled reports went."""
        rows = dict(
            session.execute(
                select(BoardReport.status, func.count())
                .where(BoardReport.reporter_id == user_id, BoardReport.status != ReportStatus.OPEN.value)
                .group_by(BoardReport.status)
            ).all()
        )
        return rows.get(ReportStatus.ACTIONED.value, 0), rows.get(ReportStatus.DISMISSED.value, 0)

    def _weight_of(self, session: Session, user: BoardUser, now: datetime) -> int:
        upheld, dismissed = self._track_record(session, user.id)
        return report_weight(now - user.created_at, upheld, dismissed)

    def report(self, reporter: UserRef, target: ReportTarget, public_id: object, reason: object) -> str:
        """File a report on an ad, an invitation one received, or a chat one is in; returns its id."""
        text = board_text.clean(reason, multiline=False) if isinstance(reason, str) else ""
        if len(text) > REASON_MAX:
            raise invalid("reason_too_long", field="reason", limit=REASON_MAX)
        now = self.clock()
        with self._tx() as session:
            user = self._lock_user(session, reporter.id)
            today = session.scalar(
                select(func.count())
                .select_from(BoardReport)
                .where(BoardReport.reporter_id == user.id, BoardReport.created_at > now - timedelta(days=1))
            )
            row = BoardReport(
                public_id=new_public_id(),
                reporter_id=user.id,
                target=target.value,
                reason=text,
                created_at=now,
                weight=self._weight_of(session, user, now),
                status=ReportStatus.OPEN.value,
            )
            ad: BoardAd | None = None
            if target is ReportTarget.AD:
                ad = self._visible_ad(session, reporter, public_id)
                if ad.author_id == user.id:
                    raise forbidden("own_ad")
                author = session.get(BoardUser, ad.author_id)
                if author is None or author.banned_at is not None:
                    raise conflict("already_handled")
                row.ad_id, row.reported_id, row.target_key = ad.id, ad.author_id, f"ad:{ad.id}"
            elif target is ReportTarget.INVITE:
                invite = self._invite(session, public_id)
                invited_ad = session.get(BoardAd, invite.ad_id)
                if invited_ad is None or invited_ad.author_id != user.id or invite.status == "swallowed":
                    raise not_found("invite")
                row.invite_id, row.ad_id, row.reported_id = invite.id, invited_ad.id, invite.sender_id
                row.target_key = f"invite:{invite.id}"
            elif target is ReportTarget.CHAT:
                chat = self._member_chat(session, user.id, public_id)
                row.chat_id, row.ad_id, row.target_key = chat.id, chat.ad_id, f"chat:{chat.id}"
                row.reported_id = chat.guest_id if user.id == chat.author_id else chat.author_id
            else:
                raise invalid("bad_request")
            if (today or 0) >= self.limits.reports_per_day:
                raise too_many("report_limit", limit=self.limits.reports_per_day)
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                raise conflict("already_reported") from None
            if target is ReportTarget.INVITE:
                session.execute(
                    update(BoardInvite)
                    .where(BoardInvite.id == row.invite_id, BoardInvite.status == InviteStatus.PENDING.value)
                    .values(status=InviteStatus.DECLINED.value, decided_at=now)
                )
            if ad is not None:
                self._weigh(session, ad, row.weight, now)
            return row.public_id

    def _weigh(self, session: Session, ad: BoardAd, weight: int, now: datetime) -> None:
        """Add a report's weight to its ad (one atomic UPDATE) and hide the ad once the weight is reached."""
        total = session.scalar(
            update(BoardAd)
            .where(BoardAd.id == ad.id)
            .values(report_count=BoardAd.report_count + 1, report_weight=BoardAd.report_weight + weight)
            .returning(BoardAd.report_weight)
        )
        if (total or 0) >= self.limits.hide_after_reports * FULL_WEIGHT:
            ad_states.move(session, ad, AdStatus.REPORTED, Actor.BOARD, "board", now, "reports")

    def _reweigh(self, session: Session, ad_id: int, who: str, now: datetime) -> bool:
        """Recount an ad's weight from its open reports; a reported ad that no longer reaches the weight is back
        (a moderator's review). True if it came back."""
        weight = session.scalar(
            select(func.coalesce(func.sum(BoardReport.weight), 0)).where(
                BoardReport.ad_id == ad_id,
                BoardReport.target == ReportTarget.AD.value,
                BoardReport.status == ReportStatus.OPEN.value,
            )
        )
        ad = session.get(BoardAd, ad_id)
        if ad is None:
            return False
        ad.report_weight = int(weight or 0)
        session.flush()
        if ad.report_weight >= self.limits.hide_after_reports * FULL_WEIGHT:
            return False
        if ad.status == AdStatus.CLOSED.value and ad.closed_from == AdStatus.REPORTED.value:
            ad.closed_from = AdStatus.OPEN.value  # reviewed while closed: a reopen brings it back open
            return False
        # Only from `reported`: a review never brings back what a moderator hid (that is `unhide_ad`).
        return ad_states.move(
            session, ad, AdStatus.OPEN, Actor.MODERATOR, who, now, "reviewed", only_from=(AdStatus.REPORTED.value,)
        )

    # ---- the queue --------------------------------------------------------------------------------------

    def report_queue(self, limit: int = 20, status: ReportStatus = ReportStatus.OPEN) -> list[ReportView]:
        with self.sessions() as session:
            rows = session.scalars(
                select(BoardReport)
                .where(BoardReport.status == status.value)
                .order_by(BoardReport.created_at.asc(), BoardReport.id.asc())
                .limit(max(1, min(limit, 500)))
            ).all()
            return [self._report_view(session, row) for row in rows]

    def get_report(self, public_id: str) -> ReportView:
        with self.sessions() as session:
            return self._report_view(session, self._report(session, public_id))

    def _report(self, session: Session, public_id: object) -> BoardReport:
        if not isinstance(public_id, str) or len(public_id) > PUBLIC_ID_MAX:
            raise not_found("report")
        row = session.scalar(select(BoardReport).where(BoardReport.public_id == public_id))
        if row is None:
            raise not_found("report")
        return row

    def _report_view(self, session: Session, row: BoardReport) -> ReportView:
        people = {
            user.id: user
            for user in session.scalars(
                select(BoardUser).where(BoardUser.id.in_([row.reported_id, row.reporter_id or 0]))
            )
        }
        reported, reporter = people.get(row.reported_id), people.get(row.reporter_id or 0)
        ad = session.get(BoardAd, row.ad_id) if row.ad_id else None
        content = ""
        if row.target == ReportTarget.AD.value and ad is not None:
            content = ad.text
        elif row.invite_id:
            invite = session.get(BoardInvite, row.invite_id)
            content = invite.message if invite else ""
        last: list[tuple[str, str, str]] = []
        if row.chat_id:
            messages = session.execute(
                select(BoardMessage.sender_id, BoardMessage.kind, BoardMessage.text)
                .where(BoardMessage.chat_id == row.chat_id, BoardMessage.created_at <= row.created_at)
                .order_by(BoardMessage.id.desc())
                .limit(20)
            ).all()
            senders = dict(session.execute(select(BoardUser.id, BoardUser.public_id).where(
                BoardUser.id.in_({m[0] for m in messages})
            )).all())  # fmt: skip
            last = [(senders.get(s, "?"), k, t) for s, k, t in reversed(messages)]
        flagged = row.reported_id if row.target == ReportTarget.REPORTER.value else row.reporter_id
        dismissed = self._track_record(session, flagged)[1] if flagged else 0
        return ReportView(
            id=row.public_id,
            target=row.target,
            reason=row.reason,
            created_at=row.created_at,
            status=row.status,
            reported=reported.public_id if reported else "?",
            reporter=reporter.public_id if reporter else "",
            reported_banned=reported is not None and reported.banned_at is not None,
            reporter_banned=reporter is not None and reporter.banned_at is not None,
            weight=row.weight,
            ad_id=ad.public_id if ad else None,
            ad_title=ad.title if ad else "",
            ad_status=ad.status if ad else "",
            ad_reports=ad.report_count if ad else 0,
            content=content,
            last_messages=last,
            resolved_by=row.resolved_by,
            reporter_dismissed=dismissed,
        )
