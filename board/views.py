"""What the board's services hand out: plain frozen values, never ORM rows, never a Telegram id.

People are `UserRef`s (a row id and an opaque `public_id`), ads, invitations, chats and reports are named by
their opaque public ids. `to_json` is the shape the HTTP API and the CLI's `--json` print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class UserRef:
    id: int
    public_id: str
    lang: str
    banned: bool


@dataclass(frozen=True)
class AdView:
    id: str
    title: str
    text: str
    category: str
    status: str
    created_at: datetime
    expires_at: datetime
    mine: bool
    invited: bool  # the viewer has already written to it
    closed_at: datetime | None = None
    reopen_until: datetime | None = None  # one's own closed ad may be reopened until then

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "category": self.category,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "mine": self.mine,
            "invited": self.invited,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "reopen_until": self.reopen_until.isoformat() if self.reopen_until else None,
        }


@dataclass(frozen=True)
class AdsPage:
    ads: list[AdView]
    page: int
    pages: int
    total: int

    def to_json(self) -> dict[str, object]:
        return {"ads": [a.to_json() for a in self.ads], "page": self.page, "pages": self.pages, "total": self.total}


@dataclass(frozen=True)
class RelayMessage:
    """One message or one album a person sent to the bot, to be copied into a chat (ids in their own chat)."""

    message_ids: tuple[int, ...]
    kind: str
    text: str
    reply_to: int | None  # the id, in the sender's chat, of the message this one replies to
    album: bool

    def to_json(self) -> dict[str, object]:
        return {"m": list(self.message_ids), "k": self.kind, "t": self.text, "r": self.reply_to, "a": self.album}

    @classmethod
    def from_json(cls, data: object) -> RelayMessage | None:
        if not isinstance(data, dict):
            return None
        try:
            ids = tuple(int(i) for i in data["m"])
            reply = None if data.get("r") is None else int(data["r"])
            return cls(ids, str(data["k"]), str(data["t"]), reply, bool(data["a"])) if ids else None
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ChatSide:
    """One side of a chat as its owner sees it: what they call the partner, and the ad it is about."""

    chat_id: str
    alias: str  # what this side calls the partner
    ad_title: str
    partner_user_id: int


@dataclass(frozen=True)
class RelayRoute:
    """Where a message went: `queued` into `side`'s chat, or why not (`none`: no chats, `ended`: the chat
    replied to has ended, `choose`: several chats, the sender picks one of `chats`)."""

    outcome: str
    side: ChatSide | None = None
    chats: tuple[ChatSide, ...] = ()


@dataclass(frozen=True)
class Decision:
    accepted: bool
    chat_id: str | None = None
    ad_title: str = ""
    author_alias: str = ""  # what the author calls the guest


@dataclass(frozen=True)
class EndedChat:
    chat_id: str
    alias: str  # what the one who ended it called the partner
    ad_title: str


@dataclass(frozen=True)
class ReportView:
    id: str
    target: str
    reason: str
    created_at: datetime
    status: str
    reported: str  # the reported user's opaque handle
    reporter: str  # "" when the board itself filed it
    reported_banned: bool
    reporter_banned: bool
    weight: int  # hundredths: what this report counted for
    ad_id: str | None
    ad_title: str
    ad_status: str
    ad_reports: int  # reports the ad has had
    content: str  # the ad's text, the invitation, or "" for a chat
    last_messages: list[tuple[str, str, str]] = field(default_factory=list)  # (handle, kind, text), oldest first
    resolved_by: str = ""
    reporter_dismissed: int = 0  # the reporter's reports dismissed so far

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "target": self.target,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "status": self.status,
            "reported": self.reported,
            "reporter": self.reporter,
            "reported_banned": self.reported_banned,
            "reporter_banned": self.reporter_banned,
            "weight": self.weight / 100,
            "ad_id": self.ad_id,
            "ad_title": self.ad_title,
            "ad_status": self.ad_status,
            "ad_reports": self.ad_reports,
            "content": self.content,
            "last_messages": [{"from": h, "kind": k, "text": t} for h, k, t in self.last_messages],
            "reporter_dismissed": self.reporter_dismissed,
        }


@dataclass(frozen=True)
class ModerationOutcome:
    """What a moderator's action on a reporter changed: reports settled and ads given back."""

    reports: int
    ads_restored: int


@dataclass(frozen=True)
class BoardStats:
    since: datetime
    ads_posted: int
    ads_open: int
    invites_sent: int
    invites_accepted: int
    invites_declined: int
    chats_active: int
    reports_open: int
    reports_new: int
    per_day: list[dict[str, object]]
    outbox_pending: int = 0

    @property
    def accept_rate(self) -> float | None:
        decided = self.invites_accepted + self.invites_declined
        return None if decided == 0 else self.invites_accepted / decided

    def to_json(self) -> dict[str, object]:
        return {
            "since": self.since.isoformat(),
            "ads_posted": self.ads_posted,
            "ads_open": self.ads_open,
            "invites_sent": self.invites_sent,
            "invites_accepted": self.invites_accepted,
            "invites_declined": self.invites_declined,
            "accept_rate": None if self.accept_rate is None else round(self.accept_rate, 3),
            "chats_active": self.chats_active,
            "reports_open": self.reports_open,
            "reports_new": self.reports_new,
            "outbox_pending": self.outbox_pending,
            "per_day": self.per_day,
        }
