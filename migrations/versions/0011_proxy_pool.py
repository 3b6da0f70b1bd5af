"""Proxies as a pool: `proxies` (the URL encrypted, a keyed hash of it unique, the masked form, a group, a cap
and the health the workers' checks give it) and `accounts.proxy_id`, the proxy an account is pinned to
(RESTRICT: a proxy in use cannot be deleted).

The cap is the database's, as the API apps' (0010): triggers refuse an account that would take a proxy over
it, on PostgreSQL after locking the proxy's row, on SQLite under its single writer lock. Adding the foreign
key rebuilds `accounts` on SQLite, which drops its triggers: those of earlier migrations are created again.

Revision ID: 0011_proxy_pool
Revises: 0010_app_pool
Create Date: 2026-12-05
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from database.models import UTCDateTime

revision = "0011_proxy_pool"
down_revision = "0010_app_pool"
branch_labels = None
depends_on = None

# What a refusal says first (`database.proxies.CAP_REFUSAL`).
CAP_REFUSAL = "proxy_cap"

SQLITE_TRIGGERS = {
    "proxy_cap_accounts_insert": "BEFORE INSERT ON accounts WHEN NEW.proxy_id IS NOT NULL",
    "proxy_cap_accounts_update": (
        "BEFORE UPDATE OF proxy_id ON accounts WHEN NEW.proxy_id IS NOT NULL AND NEW.proxy_id IS NOT OLD.proxy_id"
    ),
}
SQLITE_BODY = f"""
BEGIN
    SELECT RAISE(ABORT, '{CAP_REFUSAL}: the proxy carries as many accounts as its cap allows')
    FROM proxies
    WHERE id = NEW.proxy_id AND max_accounts IS NOT NULL
      AND max_accounts <= (SELECT count(*) FROM accounts WHERE proxy_id = NEW.proxy_id);
END"""

# In READ COMMITTED each statement of a (volatile) function sees what committed before it began: once the
# proxy's row is locked, nobody else can be adding to it, and the count that follows is exact.
POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION proxy_cap() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cap integer;
    used bigint;
BEGIN
    IF NEW.proxy_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.proxy_id IS NOT DISTINCT FROM OLD.proxy_id) THEN
        RETURN NEW;
    END IF;
    SELECT max_accounts INTO cap FROM proxies WHERE id = NEW.proxy_id FOR UPDATE;
    IF cap IS NULL THEN
        RETURN NEW;
    END IF;
    used := (SELECT count(*) FROM accounts WHERE proxy_id = NEW.proxy_id);
    IF used >= cap THEN
        RAISE EXCEPTION '{CAP_REFUSAL}: proxy % carries % of its % accounts', NEW.proxy_id, used, cap
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$"""
POSTGRESQL_TRIGGER = "CREATE TRIGGER proxy_cap_accounts BEFORE INSERT OR UPDATE OF proxy_id ON accounts"


def _sqlite_triggers_on_accounts() -> dict[str, str]:
    """The triggers on `accounts` or reading it (name -> SQL): SQLite refuses to rename a table in place of
    `accounts` while a trigger names it, and drops those on it with it."""
    rows = op.get_bind().execute(sa.text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"))
    return {
        str(name): str(sql)
        for name, table, sql in rows
        if sql and (table == "accounts" or re.search(r"\baccounts\b", str(sql)))
    }


def _drop_sqlite_triggers(saved: dict[str, str]) -> None:
    for name in saved:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _restore_sqlite_triggers(saved: dict[str, str]) -> None:
    """After the batch rebuild of `accounts`: the triggers it had to drop, created again."""
    for sql in saved.values():
        op.execute(sql)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "proxies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url_enc", sa.Text(), nullable=False),
        sa.Column("url_lookup", sa.String(length=64), nullable=False),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("scheme", sa.String(length=16), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("checked_at", UTCDateTime(), nullable=True),
        sa.Column("state_changed_at", UTCDateTime(), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=False, server_default=""),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("max_accounts IS NULL OR max_accounts >= 1", name="ck_proxies_max_accounts_positive"),
        sa.UniqueConstraint("url_lookup", name="uq_proxies_url_lookup"),
    )
    op.create_index("ix_proxies_group_name", "proxies", ["group_name"])
    saved = _sqlite_triggers_on_accounts() if sqlite else {}
    _drop_sqlite_triggers(saved)
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("proxy_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_accounts_proxy_id_proxies", "proxies", ["proxy_id"], ["id"], ondelete="RESTRICT")
    op.create_index("ix_accounts_proxy_id", "accounts", ["proxy_id"])
    if sqlite:
        _restore_sqlite_triggers(saved)
        for name, when in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when}{SQLITE_BODY}")
    else:
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(f"{POSTGRESQL_TRIGGER} FOR EACH ROW EXECUTE FUNCTION proxy_cap()")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS proxy_cap_accounts ON accounts")
        op.execute("DROP FUNCTION IF EXISTS proxy_cap()")
    saved = _sqlite_triggers_on_accounts() if sqlite else {}
    _drop_sqlite_triggers(saved)
    op.drop_index("ix_accounts_proxy_id", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("fk_accounts_proxy_id_proxies", type_="foreignkey")
        batch.drop_column("proxy_id")
    if sqlite:
        _restore_sqlite_triggers(saved)
    op.drop_index("ix_proxies_group_name", table_name="proxies")
    op.drop_table("proxies")
