"""Alembic migrations, packaged with the collector and run at `serve` start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from collector import __version__
from collector.db.engine import describe
from probe.core.errors import UserError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there); a
    UserError when a newer release of the collector has migrated it further."""
    config = alembic_config(engine)
    current = current_revision(engine)
    script = ScriptDirectory.from_config(config)
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise UserError(f"the database {describe(engine)} holds schema revision {current!r}, "
                        f"written by a newer voipwatch-collector than this one ({__version__}, "
                        f"which knows up to {script.get_current_head()!r}): run that release "
                        "or a newer one")
    command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

