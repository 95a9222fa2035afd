"""Alembic environment: the engine comes from `collector.db.migrate`, never from an ini file."""

from __future__ import annotations

from alembic import context

from collector.db.engine import write_options
from collector.db.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect().execution_options(**write_options(engine)) as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
