"""Account operations (check, sessions, 2FA, profile) with their outcomes, each account's last check, and the
plugins enabled per account with their configuration.

Revision ID: 0007_operations_plugins
Revises: 0006_device_identity
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0007_operations_plugins"
down_revision = "0006_device_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("check_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("checked_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("check_summary", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "account_operations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("batch", sa.String(length=32), nullable=False),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE", name="fk_account_operations_account_id_accounts"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_account_operations_batch", "account_operations", ["batch"])
    op.create_index("ix_account_operations_status", "account_operations", ["status"])
    op.create_index("ix_account_operations_account_id_id", "account_operations", ["account_id", "id"])
    op.create_table(
        "account_plugins",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE", name="fk_account_plugins_account_id_accounts"),
            nullable=False,
        ),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("uq_account_plugins_account_id_plugin", "account_plugins", ["account_id", "plugin"], unique=True)


def downgrade() -> None:
    op.drop_table("account_plugins")
    op.drop_table("account_operations")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("check_summary")
        batch.drop_column("checked_at")
        batch.drop_column("check_verdict")
