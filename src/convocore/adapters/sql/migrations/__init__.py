"""Alembic migrations for the schema in ``convocore.adapters.sql.tables``, run by
``convocore.adapters.sql.migrate`` (no alembic.ini).

A new revision, after changing ``tables.py``::

    python -c "from alembic import command; from convocore.adapters.sql.migrate import alembic_config; \
command.revision(alembic_config(url='sqlite+aiosqlite:///./rev.db'), 'what changed', autogenerate=True, rev_id='0002')"

against a database upgraded to the current head; then read and tidy the generated script in versions/.
"""
