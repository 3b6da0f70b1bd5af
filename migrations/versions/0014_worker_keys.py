"""Workers' public keys: the key pinned for each worker name (trusted on first sight), and a different key a
worker of that name presented since (not trusted until an admin accepts it: `run_cli.py workers trust NAME`).

Revision ID: 0014_worker_keys
Revises: 0013_roles_audit
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_worker_keys"
down_revision = "0013_roles_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("public_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pending_key", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("pending_key")
        batch.drop_column("public_key")
