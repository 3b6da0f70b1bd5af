"""What moderators do (from the admin bot or the CLI): settle a report by banning, dismissing or hiding; unhide an
ad; act on a reporter — ban them, dismiss everything they filed, or give back every ad their reports hid.

A ban is final and tells the people it touches: each partner whose chat it ends, and the banned person, once,
in their language (queued in the ban's own transaction). A report settled already is refused, not undone;
the refusal says whether the one asking settled it themselves.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from board.errors import conflict, invalid, not_found
from board.services import ad_states
from board.services.ad_states import LIVE, Actor
from board.services.base import PUBLIC_ID_MAX, new_public_id
from board.services.outbox import partner
from board.services.reports import FALSE_REPORTS_FLAG, ReportsService
from board.views import ModerationOutcome, ReportView
from database.audit import audited, named
from database.board_models import (
    REASON_MAX,
    AdStatus,
    BoardAd,
    BoardChat,
    BoardInvite,
    BoardReport,
    BoardUser,
    ChatStatus,
    InviteStatus,
    ReportStatus,
    ReportTarget,
)

_REPORT = named(("report", "report_public_id"))


class ModerationService(ReportsService):
    def _open_report(self, session: Session, public_id: str, actor: str) -> BoardReport:
        """The report to act on; one settled already is refused (saying whether `actor` settled it)."""
        row = self._report(session, public_id)
        if row.status != ReportStatus.OPEN.value:
            raise conflict("report_closed_by_you" if row.resolved_by == actor[:64] else "report_closed")
        return row

    def _settle(self, report: BoardReport, status: ReportStatus, actor: str, now: datetime) -> None:
        report.status = status.value
        report.resolved_at = now
        report.resolved_by = actor[:64]

    def _flagged(self, report: BoardReport) -> int | None:
        """Whom acting "on the reporter" means: the reporter, or for the board's own report, the one it is about."""
        return report.reported_id if report.target == ReportTarget.REPORTER.value else report.reporter_id

    # ---- banning ----------------------------------------------------------------------------------------

    def _ban_user(self, session: Session, user_id: int, actor: str, reason: str, now: datetime) -> None:
        user = session.get(BoardUser, user_id)
        assert user is not None
        newly = user.banned_at is None
        if newly:
            user.banned_at = now
            user.ban_reason = reason[:REASON_MAX]
        for ad in session.scalars(select(BoardAd).where(BoardAd.author_id == user_id, BoardAd.status.in_(LIVE))):
            ad_states.move(session, ad, AdStatus.HIDDEN, Actor.MODERATOR, actor, now, "author banned")
        chats = session.scalars(
            select(BoardChat).where(
                BoardChat.status == ChatStatus.ACTIVE.value,
                or_(BoardChat.author_id == user_id, BoardChat.guest_id == user_id),
            )
        ).all()
        for chat in chats:
            self._end(session, chat, "banned")
            side = self._side(session, chat, user_id)
            if chat.silent_user_id != side.partner_user_id:
                label = partner(self._partner_alias(chat, user_id), side.ad_title)
                self._notice(session, side.partner_user_id, "chat.ended_banned", {"partner": label})
        session.execute(
            update(BoardInvite)
            .where(BoardInvite.sender_id == user_id, BoardInvite.status == InviteStatus.PENDING.value)
            .values(status=InviteStatus.WITHDRAWN.value, decided_at=now)
        )
        for other in session.scalars(
            select(BoardReport).where(BoardReport.reported_id == user_id, BoardReport.status == ReportStatus.OPEN.value)
        ):
            self._settle(other, ReportStatus.ACTIONED, actor, now)
        if newly:
            self._notice(session, user_id, "ban.notice", dedup_key=f"ban:{user.public_id}")

    @audited("board.ban", _REPORT, params=("reason",))
    def ban(self, report_public_id: str, actor: str, reason: str = "") -> ReportView:
        """Ban the user a report is about (for good): no posting, inviting, chatting or reporting; their ads
        hide, their chats end (each partner told), their pending invitations are withdrawn, they are told."""
        now = self.clock()
        with self._tx() as session:
            row = self._open_report(session, report_public_id, actor)
            self._ban_user(session, row.reported_id, actor, reason or row.reason, now)
            self._settle(row, ReportStatus.ACTIONED, actor, now)
            session.flush()
            return self._report_view(session, row)

    # ---- settling one report ----------------------------------------------------------------------------

    @audited("board.dismiss", _REPORT)
    def dismiss(self, report_public_id: str, actor: str) -> ReportView:
        """Nothing wrong: close the report; an ad hidden by reports comes back once the rest no longer weigh
        enough (never one a moderator hid or its author closed)."""
        now = self.clock()
        with self._tx() as session:
            row = self._open_report(session, report_public_id, actor)
            self._settle(row, ReportStatus.DISMISSED, actor, now)
            session.flush()
            if row.target == ReportTarget.AD.value and row.ad_id:
                self._reweigh(session, row.ad_id, actor, now)
            if row.reporter_id is not None:
                self._flag_false_reporter(session, row.reporter_id, now)
            return self._report_view(session, row)

    def _flag_false_reporter(self, session: Session, reporter_id: int, now: datetime) -> None:
        """Report, as the board, someone whose reports were dismissed FALSE_REPORTS_FLAG times (and again at
        each further multiple), unless such a report about them is open already."""
        dismissed = self._track_record(session, reporter_id)[1]
        if dismissed == 0 or dismissed % FALSE_REPORTS_FLAG:
            return
        key = f"reporter:{reporter_id}"
        pending = session.scalar(
            select(BoardReport.id).where(BoardReport.target_key == key, BoardReport.status == ReportStatus.OPEN.value)
        )
        if pending is None:
            session.add(
                BoardReport(
                    public_id=new_public_id(),
                    reporter_id=None,
                    reported_id=reporter_id,
                    target=ReportTarget.REPORTER.value,
                    target_key=key,
                    weight=0,
                    reason="",
                    status=ReportStatus.OPEN.value,
                    created_at=now,
                )
            )

    @audited("board.hide", _REPORT)
    def hide_ad(self, report_public_id: str, actor: str) -> ReportView:
        """Hide the ad a report is about (only a moderator brings it back) and settle every open report on it."""
        now = self.clock()
        with self._tx() as session:
            row = self._open_report(session, report_public_id, actor)
            if not row.ad_id or row.target != ReportTarget.AD.value:
                raise invalid("no_ad")
            ad = session.get(BoardAd, row.ad_id)
            if ad is not None and ad.status == AdStatus.CLOSED.value:
                ad.closed_from = AdStatus.HIDDEN.value  # a reopen by its author must not undo the moderator
            elif ad is not None:
                ad_states.move(session, ad, AdStatus.HIDDEN, Actor.MODERATOR, actor, now, row.reason or "report")
            for other in session.scalars(
                select(BoardReport).where(
                    BoardReport.ad_id == row.ad_id,
                    BoardReport.target == ReportTarget.AD.value,
                    BoardReport.status == ReportStatus.OPEN.value,
                )
            ):
                self._settle(other, ReportStatus.ACTIONED, actor, now)
            session.flush()
            return self._report_view(session, row)

    @audited("board.unhide", named(("ad", "ad_public_id")))
    def unhide_ad(self, ad_public_id: str, actor: str) -> str:
        """Bring back an ad a moderator hid (its open reports are settled as reviewed); returns its title."""
        now = self.clock()
        with self._tx() as session:
            if not isinstance(ad_public_id, str) or len(ad_public_id) > PUBLIC_ID_MAX:
                raise not_found("ad")
            ad = self._ad(session, ad_public_id)
            if ad.status != AdStatus.HIDDEN.value:
                raise conflict("ad_not_hidden")
            author = session.get(BoardUser, ad.author_id)
            if author is None or author.banned_at is not None:
                raise conflict("author_banned")
            self._dismiss_reports_on(session, ad.id, actor, now)
            ad.report_weight = 0
            if not ad_states.move(session, ad, AdStatus.OPEN, Actor.MODERATOR, actor, now, "unhidden"):
                raise conflict("ad_not_hidden")
            return ad.title

    def hidden_ads(self, limit: int = 20, offset: int = 0) -> list[tuple[str, str, str]]:
        """Ads a moderator hid, newest first: (id, title, author's handle)."""
        with self.sessions() as session:
            rows = session.execute(
                select(BoardAd.public_id, BoardAd.title, BoardUser.public_id)
                .join(BoardUser, BoardUser.id == BoardAd.author_id)
                .where(BoardAd.status == AdStatus.HIDDEN.value)
                .order_by(BoardAd.id.desc())
                .offset(max(0, offset))
                .limit(max(1, min(limit, 500)))
            ).all()
            return [(ad_id, title, handle) for ad_id, title, handle in rows]

    def _dismiss_reports_on(
        self, session: Session, ad_id: int, actor: str, now: datetime, culprit: int | None = None
    ) -> int:
        """Settle every open report on an ad a moderator looked at as a whole: `culprit`'s as dismissed (their
        record), everyone else's as reviewed (neither for nor against theirs)."""
        reports = session.scalars(
            select(BoardReport).where(
                BoardReport.ad_id == ad_id,
                BoardReport.target == ReportTarget.AD.value,
                BoardReport.status == ReportStatus.OPEN.value,
            )
        ).all()
        for report in reports:
            status = ReportStatus.DISMISSED if report.reporter_id == culprit else ReportStatus.REVIEWED
            self._settle(report, status, actor, now)
        return len(reports)

    # ---- acting on a reporter ---------------------------------------------------------------------------

    def _reporter_of(self, session: Session, report_public_id: str) -> int:
        reporter = self._flagged(self._report(session, report_public_id))
        if reporter is None:
            raise invalid("no_reporter")
        return reporter

    def reporter_reach(self, report_public_id: str) -> ModerationOutcome:
        """What acting on the report's reporter would touch: their open reports, and the ads their reports keep
        hidden (for the moderator's confirmation)."""
        with self.sessions() as session:
            reporter = self._reporter_of(session, report_public_id)
            reports = session.scalar(
                select(func.count())
                .select_from(BoardReport)
                .where(BoardReport.reporter_id == reporter, BoardReport.status == ReportStatus.OPEN.value)
            )
            ads = session.scalar(
                select(func.count(func.distinct(BoardAd.id)))
                .join(BoardReport, BoardReport.ad_id == BoardAd.id)
                .where(
                    BoardReport.reporter_id == reporter,
                    BoardReport.target == ReportTarget.AD.value,
                    BoardAd.status == AdStatus.REPORTED.value,
                )
            )
            return ModerationOutcome(int(reports or 0), int(ads or 0))

    def hidden_count(self) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(select(func.count()).select_from(BoardAd).where(BoardAd.status == AdStatus.HIDDEN.value))
                or 0
            )

    @audited("board.dismiss_reporter", _REPORT)
    def dismiss_reporter(self, report_public_id: str, actor: str) -> ModerationOutcome:
        """Dismiss, in one step, every open report the reporter filed; ads they hid come back where the other
        reports no longer weigh enough. The board's own report about them is settled as acted on."""
        now = self.clock()
        with self._tx() as session:
            reporter = self._reporter_of(session, report_public_id)
            reports = session.scalars(
                select(BoardReport).where(
                    BoardReport.reporter_id == reporter, BoardReport.status == ReportStatus.OPEN.value
                )
            ).all()
            for report in reports:
                self._settle(report, ReportStatus.DISMISSED, actor, now)
            session.flush()
            ads = {r.ad_id for r in reports if r.target == ReportTarget.AD.value and r.ad_id}
            restored = sum(self._reweigh(session, ad_id, actor, now) for ad_id in sorted(ads))
            self._settle_flag(session, reporter, actor, now)
            return ModerationOutcome(len(reports), restored)

    @audited("board.restore_reporter", _REPORT)
    def restore_reporter(self, report_public_id: str, actor: str) -> ModerationOutcome:
        """Give back every ad the reporter's reports hid and that is still hidden by reports: a moderator's review
        of each (all its open reports dismissed)."""
        now = self.clock()
        with self._tx() as session:
            reporter = self._reporter_of(session, report_public_id)
            ads = session.scalars(
                select(BoardAd)
                .join(BoardReport, BoardReport.ad_id == BoardAd.id)
                .where(
                    BoardReport.reporter_id == reporter,
                    BoardReport.target == ReportTarget.AD.value,
                    BoardAd.status == AdStatus.REPORTED.value,
                )
                .distinct()
            ).all()
            settled = restored = 0
            for ad in ads:
                settled += self._dismiss_reports_on(session, ad.id, actor, now, culprit=reporter)
                ad.report_weight = 0
                still = (AdStatus.REPORTED.value,)  # never what a moderator hid meanwhile
                restored += ad_states.move(session, ad, AdStatus.OPEN, Actor.MODERATOR, actor, now, "restored", still)
            self._settle_flag(session, reporter, actor, now)
            return ModerationOutcome(settled, restored)

    @audited("board.ban_reporter", _REPORT, params=("reason",))
    def ban_reporter(self, report_public_id: str, actor: str, reason: str = "") -> ModerationOutcome:
        """Ban the reporter (false reporting), dismiss what they filed and give back what it hid."""
        now = self.clock()
        with self._tx() as session:
            reporter = self._reporter_of(session, report_public_id)
            self._ban_user(session, reporter, actor, reason or "false reports", now)
        outcome = self.dismiss_reporter(report_public_id, actor)
        restored = self.restore_reporter(report_public_id, actor)
        return ModerationOutcome(outcome.reports + restored.reports, outcome.ads_restored + restored.ads_restored)

    def _settle_flag(self, session: Session, reporter: int, actor: str, now: datetime) -> None:
        for flag in session.scalars(
            select(BoardReport).where(
                BoardReport.target_key == f"reporter:{reporter}", BoardReport.status == ReportStatus.OPEN.value
            )
        ):
            self._settle(flag, ReportStatus.ACTIONED, actor, now)
