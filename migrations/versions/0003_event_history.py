"""Bounded event history: folded repetitions (`repeat_count`, `last_at`) and indexes for retention.

Revision ID: 0003_event_history
Revises: 0002_accounts
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0003_event_history"
down_revision = "0002_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fleet_events") as batch:
        batch.add_column(sa.Column("last_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("repeat_count", sa.Integer(), server_default="1", nullable=False))
    op.execute("UPDATE fleet_events SET last_at = created_at")
    with op.batch_alter_table("fleet_events") as batch:
        batch.alter_column("last_at", existing_type=UTCDateTime(), nullable=False)
    op.create_index("ix_fleet_events_subject_last_at", "fleet_events", ["subject", "last_at"])
    op.create_index("ix_fleet_events_last_at", "fleet_events", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_fleet_events_last_at", table_name="fleet_events")
    op.drop_index("ix_fleet_events_subject_last_at", table_name="fleet_events")
    with op.batch_alter_table("fleet_events") as batch:
        batch.drop_column("repeat_count")
        batch.drop_column("last_at")
