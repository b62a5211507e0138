"""Alembic's entry point for keyless' migrations (run by `alembic_config` users, never imported).

Online, the migrations run on the connection keyless passes in `config.attributes`, inside
its write transaction; offline (`--sql`), they print the SQL for the URL's dialect.
"""

from __future__ import annotations

from alembic import context

from keyless.store.db import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
else:
    # SQLite cannot ALTER most of a table: batch mode copies it into a new one instead.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
with context.begin_transaction():
    context.run_migrations()
