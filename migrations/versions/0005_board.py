"""The anonymous board's tables: users (Telegram ids only encrypted and hashed), ads, invitations, chats,
relayed messages, blocks and reports.

Revision ID: 0005_board
Revises: 0004_phone_at_rest
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_board"
down_revision = "0004_phone_at_rest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "board_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("tg_lookup", sa.String(length=64), nullable=False),
        sa.Column("tg_enc", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("banned_at", sa.DateTime(), nullable=True),
        sa.Column("ban_reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_users")),
        sa.UniqueConstraint("public_id", name=op.f("uq_board_users_public_id")),
        sa.UniqueConstraint("tg_lookup", name=op.f("uq_board_users_tg_lookup")),
    )
    op.create_table(
        "board_ads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["board_users.id"], name=op.f("fk_board_ads_author_id_board_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_ads")),
        sa.UniqueConstraint("public_id", name=op.f("uq_board_ads_public_id")),
    )
    with op.batch_alter_table("board_ads", schema=None) as batch_op:
        batch_op.create_index("ix_board_ads_author_id_status", ["author_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_board_ads_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_board_ads_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index("ix_board_ads_status_created_at", ["status", "created_at"], unique=False)

    op.create_table(
        "board_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blocker_id", sa.Integer(), nullable=False),
        sa.Column("blocked_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blocked_id"], ["board_users.id"], name=op.f("fk_board_blocks_blocked_id_board_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["blocker_id"], ["board_users.id"], name=op.f("fk_board_blocks_blocker_id_board_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_blocks")),
        sa.UniqueConstraint("blocker_id", "blocked_id", name="uq_board_blocks_blocker_id_blocked_id"),
    )
    with op.batch_alter_table("board_blocks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_board_blocks_blocked_id"), ["blocked_id"], unique=False)

    op.create_table(
        "board_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("ad_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ad_id"], ["board_ads.id"], name=op.f("fk_board_invites_ad_id_board_ads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["board_users.id"], name=op.f("fk_board_invites_sender_id_board_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_invites")),
        sa.UniqueConstraint("public_id", name=op.f("uq_board_invites_public_id")),
        sa.UniqueConstraint("sender_id", "ad_id", name="uq_board_invites_sender_id_ad_id"),
    )
    with op.batch_alter_table("board_invites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_board_invites_ad_id"), ["ad_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_board_invites_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_board_invites_sender_id_created_at", ["sender_id", "created_at"], unique=False)

    op.create_table(
        "board_chats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("invite_id", sa.Integer(), nullable=False),
        sa.Column("ad_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("guest_id", sa.Integer(), nullable=False),
        sa.Column("author_alias", sa.String(length=8), nullable=False),
        sa.Column("guest_alias", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ended_reason", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ad_id"], ["board_ads.id"], name=op.f("fk_board_chats_ad_id_board_ads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["board_users.id"], name=op.f("fk_board_chats_author_id_board_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["guest_id"], ["board_users.id"], name=op.f("fk_board_chats_guest_id_board_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"], ["board_invites.id"], name=op.f("fk_board_chats_invite_id_board_invites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_chats")),
        sa.UniqueConstraint("invite_id", name=op.f("uq_board_chats_invite_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_board_chats_public_id")),
    )
    with op.batch_alter_table("board_chats", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_board_chats_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_board_chats_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_board_chats_guest_id"), ["guest_id"], unique=False)

    op.create_table(
        "board_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("src_message_id", sa.BigInteger(), nullable=False),
        sa.Column("dst_message_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["board_chats.id"], name=op.f("fk_board_messages_chat_id_board_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["board_users.id"], name=op.f("fk_board_messages_sender_id_board_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_messages")),
    )
    with op.batch_alter_table("board_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_board_messages_chat_id_sender_id_dst_message_id",
            ["chat_id", "sender_id", "dst_message_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_board_messages_chat_id_sender_id_src_message_id",
            ["chat_id", "sender_id", "src_message_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_board_messages_created_at"), ["created_at"], unique=False)

    op.create_table(
        "board_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("reported_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("ad_id", sa.Integer(), nullable=True),
        sa.Column("invite_id", sa.Integer(), nullable=True),
        sa.Column("chat_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["ad_id"], ["board_ads.id"], name=op.f("fk_board_reports_ad_id_board_ads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["board_chats.id"], name=op.f("fk_board_reports_chat_id_board_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["board_invites.id"],
            name=op.f("fk_board_reports_invite_id_board_invites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reported_id"],
            ["board_users.id"],
            name=op.f("fk_board_reports_reported_id_board_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"],
            ["board_users.id"],
            name=op.f("fk_board_reports_reporter_id_board_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_board_reports")),
        sa.UniqueConstraint("public_id", name=op.f("uq_board_reports_public_id")),
    )
    with op.batch_alter_table("board_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_board_reports_reported_id"), ["reported_id"], unique=False)
        batch_op.create_index("ix_board_reports_status_created_at", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("board_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_board_reports_status_created_at")
        batch_op.drop_index(batch_op.f("ix_board_reports_reported_id"))

    op.drop_table("board_reports")
    with op.batch_alter_table("board_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_board_messages_created_at"))
        batch_op.drop_index("ix_board_messages_chat_id_sender_id_src_message_id")
        batch_op.drop_index("ix_board_messages_chat_id_sender_id_dst_message_id")

    op.drop_table("board_messages")
    with op.batch_alter_table("board_chats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_board_chats_guest_id"))
        batch_op.drop_index(batch_op.f("ix_board_chats_created_at"))
        batch_op.drop_index(batch_op.f("ix_board_chats_author_id"))

    op.drop_table("board_chats")
    with op.batch_alter_table("board_invites", schema=None) as batch_op:
        batch_op.drop_index("ix_board_invites_sender_id_created_at")
        batch_op.drop_index(batch_op.f("ix_board_invites_created_at"))
        batch_op.drop_index(batch_op.f("ix_board_invites_ad_id"))

    op.drop_table("board_invites")
    with op.batch_alter_table("board_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_board_blocks_blocked_id"))

    op.drop_table("board_blocks")
    with op.batch_alter_table("board_ads", schema=None) as batch_op:
        batch_op.drop_index("ix_board_ads_status_created_at")
        batch_op.drop_index(batch_op.f("ix_board_ads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_board_ads_category"))
        batch_op.drop_index("ix_board_ads_author_id_status")

    op.drop_table("board_ads")
    op.drop_table("board_users")
