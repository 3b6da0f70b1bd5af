"""Alembic environment: runs migrations on the engine handed over by `database.engine.ensure_schema`
(or one built from DATABASE_URL when `alembic` is run by hand)."""

from __future__ import annotations

from alembic import context

from database.board_models import is_modelled
from database.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from config import load_backend_settings, load_env_file
        from database.engine import create_db_engine

        load_env_file()
        engine = create_db_engine(load_backend_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_name=is_modelled,  # the board's full-text index lives outside the models
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
