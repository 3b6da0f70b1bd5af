"""Plugin configuration marked secret: the values of the keys a plugin declares secret (`SECRET_CONFIG`) are kept
apart from the rest of its configuration, encrypted with SECRET_KEY (`backend.plugin_secrets`).

Revision ID: 0015_plugin_secrets
Revises: 0014_worker_keys
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_plugin_secrets"
down_revision = "0014_worker_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account_plugins") as batch:
        batch.add_column(sa.Column("secrets_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("account_plugins") as batch:
        batch.drop_column("secrets_enc")
