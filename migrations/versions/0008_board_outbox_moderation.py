"""The board under real conditions: the outbox of messages to send, ads' status history and report weights,
one report per person and thing, chats a blocker left silently, and search by the database's own full-text
index (FTS5 on SQLite, a GIN index over a tsvector on PostgreSQL) on text folded for case and ё.

Revision ID: 0008_board_outbox_moderation
Revises: 0007_operations_plugins
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0008_board_outbox_moderation"
down_revision = "0007_operations_plugins"
branch_labels = None
depends_on = None

FTS_TRIGGERS = (
    """CREATE TRIGGER board_ads_fts_insert AFTER INSERT ON board_ads BEGIN
         INSERT INTO board_ads_fts(rowid, search_text) VALUES (new.id, new.search_text);
       END""",
    """CREATE TRIGGER board_ads_fts_delete AFTER DELETE ON board_ads BEGIN
         INSERT INTO board_ads_fts(board_ads_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
       END""",
    """CREATE TRIGGER board_ads_fts_update AFTER UPDATE OF search_text ON board_ads BEGIN
         INSERT INTO board_ads_fts(board_ads_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
         INSERT INTO board_ads_fts(rowid, search_text) VALUES (new.id, new.search_text);
       END""",
)


def _target_keys() -> None:
    """Give every existing report its target key; a duplicate (two requests raced) gets one of its own."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, reporter_id, target, ad_id, invite_id, chat_id FROM board_reports ORDER BY id")
    ).all()
    seen: set[tuple[int, str]] = set()
    for report_id, reporter_id, target, ad_id, invite_id, chat_id in rows:
        subject = {"ad": ad_id, "invite": invite_id, "chat": chat_id}.get(target)
        key = f"{target}:{subject}"
        if (reporter_id, key) in seen:
            key = f"{key}#{report_id}"
        seen.add((reporter_id, key))
        bind.execute(
            sa.text("UPDATE board_reports SET target_key = :key WHERE id = :id"), {"key": key, "id": report_id}
        )


def upgrade() -> None:
    op.create_table(
        "board_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("dedup_key", sa.String(length=80), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["board_users.id"],
            name=op.f("fk_board_outbox_recipient_id_board_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_outbox")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_board_outbox_dedup_key")),
        sqlite_autoincrement=True,  # ids never reused after a delete: the sender loads rows by id
    )
    op.create_index("ix_board_outbox_state_id", "board_outbox", ["state", "id"], unique=False)

    op.create_table(
        "board_ad_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ad_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=False),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ad_id"], ["board_ads.id"], name=op.f("fk_board_ad_events_ad_id_board_ads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_ad_events")),
    )
    op.create_index(op.f("ix_board_ad_events_ad_id"), "board_ad_events", ["ad_id"], unique=False)

    with op.batch_alter_table("board_ads") as batch:
        batch.add_column(sa.Column("report_weight", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("closed_from", sa.String(length=16), nullable=False, server_default=""))
    op.execute("UPDATE board_ads SET report_weight = report_count * 100")
    # Search compares text folded for case and ё; stored text was case-folded already.
    op.execute("UPDATE board_ads SET search_text = replace(search_text, 'ё', 'е')")

    with op.batch_alter_table("board_chats") as batch:
        batch.add_column(sa.Column("silent_user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_board_chats_silent_user_id_board_users"),
            "board_users",
            ["silent_user_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("board_reports") as batch:
        batch.add_column(sa.Column("target_key", sa.String(length=40), nullable=False, server_default=""))
        batch.add_column(sa.Column("weight", sa.Integer(), nullable=False, server_default="100"))
        batch.alter_column("reporter_id", existing_type=sa.Integer(), nullable=True)
    _target_keys()
    with op.batch_alter_table("board_reports") as batch:
        batch.create_index("ix_board_reports_reporter_id_created_at", ["reporter_id", "created_at"], unique=False)
        batch.create_unique_constraint("uq_board_reports_reporter_id_target_key", ["reporter_id", "target_key"])

    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE board_ads_fts USING fts5(search_text, content='board_ads', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        for trigger in FTS_TRIGGERS:
            op.execute(trigger)
        op.execute("INSERT INTO board_ads_fts(board_ads_fts) VALUES ('rebuild')")
    else:
        op.execute("CREATE INDEX ix_board_ads_search_tsv ON board_ads USING gin (to_tsvector('simple', search_text))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("board_ads_fts_insert", "board_ads_fts_delete", "board_ads_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS board_ads_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_board_ads_search_tsv")
    with op.batch_alter_table("board_reports") as batch:
        batch.drop_constraint("uq_board_reports_reporter_id_target_key", type_="unique")
        batch.drop_index("ix_board_reports_reporter_id_created_at")
        batch.drop_column("weight")
        batch.drop_column("target_key")
    with op.batch_alter_table("board_chats") as batch:
        batch.drop_constraint("fk_board_chats_silent_user_id_board_users", type_="foreignkey")
        batch.drop_column("silent_user_id")
    with op.batch_alter_table("board_ads") as batch:
        batch.drop_column("closed_from")
        batch.drop_column("report_weight")
    op.drop_index(op.f("ix_board_ad_events_ad_id"), table_name="board_ad_events")
    op.drop_table("board_ad_events")
    op.drop_index("ix_board_outbox_state_id", table_name="board_outbox")
    op.drop_table("board_outbox")
