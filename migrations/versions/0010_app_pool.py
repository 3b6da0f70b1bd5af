"""API app credentials as a pool, and one account per session.

`api_apps` holds the pool (the hash encrypted, a cap per app or none); `api_app_claims` the logins in progress
that hold a place under a cap; `accounts.app_id` the app an account was given (RESTRICT: an app in use cannot
be removed). The cap is the database's: triggers refuse an account or a claim that would take an app over it,
on PostgreSQL after locking the app's row (so two writers at once are counted one after the other), on SQLite
under its single writer lock.

`accounts.session_lookup` is a keyed hash of the session's auth key, unique: the same session cannot be two
accounts. This upgrade cannot compute it (it needs SECRET_KEY and the sessions decrypted); existing accounts get
it from the accounts service before its first import (`database.session_keys.backfill`) or from `rekey`.

Revision ID: 0010_app_pool
Revises: 0009_detail_codes
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0010_app_pool"
down_revision = "0009_detail_codes"
branch_labels = None
depends_on = None

# What a refusal says first (SQLite: the message; PostgreSQL: the message of a check_violation), so the
# service can tell it from the other integrity errors (`database.apps.CAP_REFUSAL`).
CAP_REFUSAL = "api_app_cap"

SQLITE_TRIGGERS = {
    "api_app_cap_accounts_insert": "BEFORE INSERT ON accounts WHEN NEW.app_id IS NOT NULL",
    "api_app_cap_accounts_update": (
        "BEFORE UPDATE OF app_id ON accounts WHEN NEW.app_id IS NOT NULL AND NEW.app_id IS NOT OLD.app_id"
    ),
    "api_app_cap_claims_insert": "BEFORE INSERT ON api_app_claims",
}
SQLITE_BODY = f"""
BEGIN
    SELECT RAISE(ABORT, '{CAP_REFUSAL}: the app carries as many accounts as its cap allows')
    FROM api_apps
    WHERE id = NEW.app_id AND max_accounts IS NOT NULL
      AND max_accounts <= (SELECT count(*) FROM accounts WHERE app_id = NEW.app_id)
                        + (SELECT count(*) FROM api_app_claims WHERE app_id = NEW.app_id);
END"""

# In READ COMMITTED each statement of a (volatile) function sees what committed before it began: once the
# app's row is locked, nobody else can be adding to the app, and the count that follows is exact.
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION api_app_cap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cap integer;
    used bigint;
BEGIN
    IF NEW.app_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.app_id IS NOT DISTINCT FROM OLD.app_id) THEN
        RETURN NEW;
    END IF;
    SELECT max_accounts INTO cap FROM api_apps WHERE id = NEW.app_id FOR UPDATE;
    IF cap IS NULL THEN
        RETURN NEW;
    END IF;
    used := (SELECT count(*) FROM accounts WHERE app_id = NEW.app_id)
          + (SELECT count(*) FROM api_app_claims WHERE app_id = NEW.app_id);
    IF used >= cap THEN
        RAISE EXCEPTION '{CAP_REFUSAL}: app % carries % of its % accounts', NEW.app_id, used, cap
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$"""
POSTGRESQL_TRIGGERS = {
    "api_app_cap_accounts": "BEFORE INSERT OR UPDATE OF app_id ON accounts",
    "api_app_cap_claims": "BEFORE INSERT ON api_app_claims",
}


def upgrade() -> None:
    op.create_table(
        "api_apps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("api_id", sa.Integer(), nullable=False),
        sa.Column("api_hash_enc", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("max_accounts IS NULL OR max_accounts >= 1", name="ck_api_apps_max_accounts_positive"),
        sa.UniqueConstraint("api_id", name="uq_api_apps_api_id"),
    )
    op.create_table(
        "api_app_claims",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "app_id",
            sa.Integer(),
            sa.ForeignKey("api_apps.id", ondelete="CASCADE", name="fk_api_app_claims_app_id_api_apps"),
            nullable=False,
        ),
        sa.Column("login_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("login_id", name="uq_api_app_claims_login_id"),
    )
    op.create_index("ix_api_app_claims_app_id", "api_app_claims", ["app_id"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("app_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("session_lookup", sa.String(length=64), nullable=True))
        batch.create_foreign_key("fk_accounts_app_id_api_apps", "api_apps", ["app_id"], ["id"], ondelete="RESTRICT")
    op.create_index("ix_accounts_app_id", "accounts", ["app_id"])
    op.create_index("uq_accounts_session_lookup", "accounts", ["session_lookup"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        for name, when in POSTGRESQL_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW EXECUTE FUNCTION api_app_cap()")
    else:
        for name, when in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when}{SQLITE_BODY}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, when in POSTGRESQL_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {when.rsplit(' ', 1)[1]}")
        op.execute("DROP FUNCTION IF EXISTS api_app_cap()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("uq_accounts_session_lookup", table_name="accounts")
    op.drop_index("ix_accounts_app_id", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("fk_accounts_app_id_api_apps", type_="foreignkey")
        batch.drop_column("session_lookup")
        batch.drop_column("app_id")
    op.drop_index("ix_api_app_claims_app_id", table_name="api_app_claims")
    op.drop_table("api_app_claims")
    op.drop_table("api_apps")
