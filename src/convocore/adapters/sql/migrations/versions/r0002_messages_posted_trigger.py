"""The ``messages_posted`` trigger (see ``tables.POSTED_TRIGGER``), on SQLite and on PostgreSQL.

Storing a message newer than its conversation's last makes it the last and moves its sender's
read marker to it, so a post runs neither row's UPDATE. Made so that it may be there already (a
database made by create_all since the trigger was added has it, and is adopted at 0001 like any
other). The statements are copied here, not imported, so this revision stays what it was.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE = """CREATE TRIGGER IF NOT EXISTS messages_posted AFTER INSERT ON messages
WHEN NEW.seq > (SELECT last_seq FROM conversations WHERE id = NEW.conversation_id)
BEGIN
    UPDATE conversations SET last_seq = NEW.seq, last_activity_at = NEW.created_at WHERE id = NEW.conversation_id;
    UPDATE members SET last_read_seq = NEW.seq WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id;
END"""
_POSTGRESQL = (
    """CREATE OR REPLACE FUNCTION messages_posted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversations SET last_seq = NEW.seq, last_activity_at = NEW.created_at
        WHERE id = NEW.conversation_id AND last_seq < NEW.seq;
    IF FOUND THEN
        UPDATE members SET last_read_seq = NEW.seq
            WHERE conversation_id = NEW.conversation_id AND user_id = NEW.sender_id;
    END IF;
    RETURN NULL;
END $$""",
    "DROP TRIGGER IF EXISTS messages_posted ON messages",
    "CREATE TRIGGER messages_posted AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_posted()",
)


def upgrade() -> None:
    for statement in _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else (_SQLITE,):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS messages_posted ON messages")
        op.execute("DROP FUNCTION IF EXISTS messages_posted()")
    else:
        op.execute("DROP TRIGGER IF EXISTS messages_posted")
