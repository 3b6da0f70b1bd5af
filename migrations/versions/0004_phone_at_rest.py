"""Phone numbers at rest: encrypted, a keyed hash for uniqueness and lookups, and the masked form.

Existing numbers are encrypted with SECRET_KEY, which this upgrade therefore needs when there are accounts
(a fresh database upgrades without it).

Revision ID: 0004_phone_at_rest
Revises: 0003_event_history
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_phone_at_rest"
down_revision = "0003_event_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, phone FROM accounts")).fetchall()
    box = _secret_box(len(rows)) if rows else None  # before any change: SQLite cannot roll DDL back
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("phone_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_lookup", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("phone_masked", sa.String(length=32), nullable=True))
    if box is not None:
        from common.validation import mask_phone

        for account_id, phone in rows:
            connection.execute(
                sa.text(
                    "UPDATE accounts SET phone_enc = :enc, phone_lookup = :lookup, phone_masked = :masked"
                    " WHERE id = :id"
                ),
                {"enc": box.encrypt(phone), "lookup": box.lookup(phone), "masked": mask_phone(phone), "id": account_id},
            )
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("phone_enc", existing_type=sa.Text(), nullable=False)
        batch.alter_column("phone_lookup", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("phone_masked", existing_type=sa.String(length=32), nullable=False)
        batch.create_unique_constraint("uq_accounts_phone_lookup", ["phone_lookup"])
        batch.drop_constraint("uq_accounts_phone", type_="unique")
        batch.drop_column("phone")


def _secret_box(count: int) -> Any:
    from common.crypto import SecretBox
    from config import ConfigError, load_secret_key

    try:
        return SecretBox(load_secret_key())
    except ConfigError as error:
        raise ConfigError(
            f"upgrading the database encrypts the {count} stored phone number(s), which needs SECRET_KEY "
            f"(the same as the workers'): {error}"
        ) from None


def downgrade() -> None:
    raise NotImplementedError("phone numbers are not decrypted back into the database")
