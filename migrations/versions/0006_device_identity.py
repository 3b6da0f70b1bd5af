"""Each account's device identity (device model, system and app versions, languages), used on every connect.

Existing accounts get one chosen once from the realistic set in `common.devices`, by their phone lookup
key: the same choice a worker makes for a spec sent before this revision, so nothing changes on their next
connect but the end of "Fleet worker". No secret is needed.

Revision ID: 0006_device_identity
Revises: 0005_board
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_device_identity"
down_revision = "0005_board"
branch_labels = None
depends_on = None

COLUMNS = (
    # column, DeviceIdentity field, length
    ("device_model", "device_model", 128),
    ("device_system_version", "system_version", 128),
    ("device_app_version", "app_version", 64),
    ("device_lang_code", "lang_code", 16),
    ("device_system_lang_code", "system_lang_code", 16),
    ("device_lang_pack", "lang_pack", 32),
)


def upgrade() -> None:
    from common.devices import choose_identity

    with op.batch_alter_table("accounts") as batch:
        for column, _field, length in COLUMNS:
            batch.add_column(sa.Column(column, sa.String(length=length), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, phone_lookup FROM accounts")).fetchall()
    assignments = ", ".join(f"{column} = :{column}" for column, _field, _length in COLUMNS)
    update = sa.text(f"UPDATE accounts SET {assignments} WHERE id = :id")
    for start in range(0, len(rows), 1000):
        values = []
        for account_id, phone_lookup in rows[start : start + 1000]:
            chosen = choose_identity(phone_lookup or "")
            values.append({"id": account_id, **{column: getattr(chosen, field) for column, field, _ in COLUMNS}})
        connection.execute(update, values)
    with op.batch_alter_table("accounts") as batch:
        for column, _field, length in COLUMNS:
            batch.alter_column(column, existing_type=sa.String(length=length), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for column, _field, _length in reversed(COLUMNS):
            batch.drop_column(column)
