"""Accounts: phone, encrypted credentials and session, assigned worker, desired and actual state.

Revision ID: 0002_accounts
Revises: 0001_fleet
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0002_accounts"
down_revision = "0001_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("api_id", sa.Integer(), nullable=False),
        sa.Column("api_hash_enc", sa.Text(), nullable=False),
        sa.Column("session_enc", sa.Text(), nullable=True),
        sa.Column("proxy_enc", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.Column("desired_state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=False),
        sa.Column("flood_wait_until", UTCDateTime(), nullable=True),
        sa.Column("status_changed_at", UTCDateTime(), nullable=True),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=True),
        sa.Column("tg_username", sa.String(length=64), nullable=True),
        sa.Column("tg_name", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["workers.id"], name=op.f("fk_accounts_worker_id_workers"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("phone", name=op.f("uq_accounts_phone")),
    )
    op.create_index("ix_accounts_worker_id_status", "accounts", ["worker_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_accounts_worker_id_status", table_name="accounts")
    op.drop_table("accounts")
