"""The initial schema: users, sessions, conversations, members, messages.

Exactly what ``metadata.create_all`` made before there were migrations, so such a database is
stamped at this revision (see ``migrate.BASELINE``) rather than created again.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def text(length: int) -> sa.types.TypeEngine[str]:
    """Compared bytewise on every backend (see ``tables.bytewise``)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def moment() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", text(36), nullable=False),
        sa.Column("username", text(64), nullable=False),
        sa.Column("username_key", text(64), nullable=False),
        sa.Column("display_name", text(64), nullable=False),
        sa.Column("password_hash", text(255), nullable=False),
        sa.Column("created_at", moment(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username_key", name="uq_users_username_key"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", text(36), nullable=False),
        sa.Column("kind", text(16), nullable=False),
        sa.Column("title", text(200), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_by", text(36), nullable=False),
        sa.Column("created_at", moment(), nullable=False),
        sa.Column("last_activity_at", moment(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("direct_key", text(73), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_conversations_created_by_users"),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.UniqueConstraint("direct_key", name="uq_conversations_direct_key"),
    )
    op.create_index("ix_conversations_last_activity_at_id", "conversations", ["last_activity_at", "id"])
    op.create_index("ix_conversations_public_title_id", "conversations", ["public", "title", "id"])
    op.create_table(
        "sessions",
        sa.Column("id", text(36), nullable=False),
        sa.Column("user_id", text(36), nullable=False),
        sa.Column("access_hash", text(255), nullable=False),
        sa.Column("access_expires_at", moment(), nullable=False),
        sa.Column("refresh_hash", text(255), nullable=False),
        sa.Column("refresh_expires_at", moment(), nullable=False),
        sa.Column("created_at", moment(), nullable=False),
        sa.Column("revoked_at", moment(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("access_hash", name="uq_sessions_access_hash"),
        sa.UniqueConstraint("refresh_hash", name="uq_sessions_refresh_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "members",
        sa.Column("conversation_id", text(36), nullable=False),
        sa.Column("user_id", text(36), nullable=False),
        sa.Column("role", text(16), nullable=False),
        sa.Column("joined_at", moment(), nullable=False),
        sa.Column("last_read_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], name="fk_members_conversation_id_conversations"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_members_user_id_users"),
        sa.PrimaryKeyConstraint("conversation_id", "user_id", name="pk_members"),
    )
    op.create_index("ix_members_user_id", "members", ["user_id"])
    op.create_table(
        "messages",
        sa.Column("conversation_id", text(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", text(36), nullable=False),
        sa.Column("sender_id", text(36), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("client_id", text(64), nullable=True),
        sa.Column("reply_to", sa.Integer(), nullable=True),
        sa.Column("created_at", moment(), nullable=False),
        sa.Column("edited_at", moment(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversations.id"], name="fk_messages_conversation_id_conversations"
        ),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], name="fk_messages_sender_id_users"),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name="pk_messages"),
        sa.UniqueConstraint(
            "conversation_id", "sender_id", "client_id", name="uq_messages_conversation_id_sender_id_client_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_index("ix_members_user_id", table_name="members")
    op.drop_table("members")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_conversations_public_title_id", table_name="conversations")
    op.drop_index("ix_conversations_last_activity_at_id", table_name="conversations")
    op.drop_table("conversations")
    op.drop_table("users")
