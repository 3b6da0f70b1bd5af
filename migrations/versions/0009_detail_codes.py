"""Details as codes: next to each English detail (an account's status detail, an event's detail, an
operation's error) its code with parameters (`common.details`, JSON), which the bots render in the admin's
language; and the last check's result as data, so that it too is rendered, not read back from its summary.
Rows written before have none: the bots show their English text.

Revision ID: 0009_detail_codes
Revises: 0008_board_outbox_moderation
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_detail_codes"
down_revision = "0008_board_outbox_moderation"
branch_labels = None
depends_on = None

COLUMNS = (
    ("accounts", "status_code"),
    ("fleet_events", "detail_code"),
    ("account_operations", "error_code"),
    ("accounts", "check_result"),  # the last check's result (JSON): the bots render it, not its English summary
)


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
