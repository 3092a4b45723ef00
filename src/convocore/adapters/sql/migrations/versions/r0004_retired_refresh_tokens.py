"""Refresh tokens rotated away are remembered (by hash), so that one presented again, which
means it leaked, revokes its session. Made so that it may be there already (a database made
by create_all since the table was added has it, and is adopted at 0001 like any other).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("retired_refresh_tokens"):
        return
    op.create_table(
        "retired_refresh_tokens",
        sa.Column(
            "refresh_hash", sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("session_id", sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql"), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name="fk_retired_refresh_tokens_session_id_sessions"),
        sa.PrimaryKeyConstraint("refresh_hash", name="pk_retired_refresh_tokens"),
    )
    op.create_index("ix_retired_refresh_tokens_session_id", "retired_refresh_tokens", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_retired_refresh_tokens_session_id", table_name="retired_refresh_tokens")
    op.drop_table("retired_refresh_tokens")
