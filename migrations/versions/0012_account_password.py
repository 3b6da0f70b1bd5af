"""`accounts.password_enc`: the account's 2FA password as a Fernet token (`common.crypto`), when known — from an
imported session's sidecar, or set by the fleet's own `2fa` operation. NULL: none on file.

A nullable column is added in place (no rebuild of `accounts`, which on SQLite would drop the triggers of
0010 and 0011).

Revision ID: 0012_account_password
Revises: 0011_proxy_pool
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_account_password"
down_revision = "0011_proxy_pool"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("password_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "password_enc")
