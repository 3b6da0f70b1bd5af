"""The board's numbers for moderators (today, the week, per day) and its housekeeping: relayed messages' text is
forgotten after BOARD_HISTORY_DAYS, settled outbox rows after a day."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from board.services.moderation import ModerationService
from board.views import BoardStats
from database.board_models import (
    AdStatus,
    BoardAd,
    BoardChat,
    BoardInvite,
    BoardMessage,
    BoardReport,
    ChatStatus,
    InviteStatus,
    ReportStatus,
)


class StatsService(ModerationService):
    def stats(self, days: int = 1) -> BoardStats:
        now = self.clock()
        since = now - timedelta(days=max(1, days))
        with self.sessions() as session:

            def count(model: type, *conditions: object) -> int:
                return session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0  # type: ignore[arg-type]

            per_day = []
            for offset in range(max(1, days) - 1, -1, -1):
                end = now - timedelta(days=offset)
                start = end - timedelta(days=1)
                per_day.append(
                    {
                        "day": end.date().isoformat(),
                        "ads": count(BoardAd, BoardAd.created_at > start, BoardAd.created_at <= end),
                        "invites": count(BoardInvite, BoardInvite.created_at > start, BoardInvite.created_at <= end),
                        "accepted": count(
                            BoardInvite,
                            BoardInvite.status == InviteStatus.ACCEPTED.value,
                            BoardInvite.decided_at > start,
                            BoardInvite.decided_at <= end,
                        ),
                        "declined": count(
                            BoardInvite,
                            BoardInvite.status == InviteStatus.DECLINED.value,
                            BoardInvite.decided_at > start,
                            BoardInvite.decided_at <= end,
                        ),
                    }
                )
            return BoardStats(
                since=since,
                ads_posted=count(BoardAd, BoardAd.created_at > since),
                ads_open=count(BoardAd, BoardAd.status == AdStatus.OPEN.value, BoardAd.expires_at > now),
                invites_sent=count(BoardInvite, BoardInvite.created_at > since),
                invites_accepted=count(
                    BoardInvite, BoardInvite.status == InviteStatus.ACCEPTED.value, BoardInvite.decided_at > since
                ),
                invites_declined=count(
                    BoardInvite, BoardInvite.status == InviteStatus.DECLINED.value, BoardInvite.decided_at > since
                ),
                chats_active=count(BoardChat, BoardChat.status == ChatStatus.ACTIVE.value),
                reports_open=count(BoardReport, BoardReport.status == ReportStatus.OPEN.value),
                reports_new=count(BoardReport, BoardReport.created_at > since),
                per_day=per_day,
                outbox_pending=self.outbox_backlog(),
            )

    def prune_history(self, batch: int = 5000) -> int:
        """Forget relayed messages' text older than BOARD_HISTORY_DAYS (the id pairs of active chats stay)."""
        cutoff = self.clock() - timedelta(days=self.limits.history_days)
        removed = 0
        while True:
            with self._tx() as session:
                old = select(BoardMessage.id).where(BoardMessage.created_at < cutoff).limit(batch)
                ids = session.scalars(old).all()
                if not ids:
                    return removed
                session.execute(delete(BoardMessage).where(BoardMessage.id.in_(ids)))
                removed += len(ids)
