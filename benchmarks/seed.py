"""Fill one conversation with a deep history straight into the SQLite file, through the SQL
adapter's own table definitions (far faster than the API), while no server is running."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, update

from convocore.adapters.sql.tables import conversations, messages

CHUNK = 50_000


def seed_history(db_path: Path, *, conversation_id: str, sender_ids: list[str], count: int) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    start = datetime.now(UTC) - timedelta(seconds=count)
    try:
        with engine.begin() as connection:
            if connection.execute(select(func.count()).select_from(messages)).scalar_one():
                raise RuntimeError("the conversation to seed already has messages")
            statement = insert(messages)
            for first in range(1, count + 1, CHUNK):
                rows = [
                    {
                        "conversation_id": conversation_id,
                        "seq": seq,
                        "id": str(uuid.uuid4()),
                        "sender_id": sender_ids[seq % len(sender_ids)],
                        "body": f"history message {seq} ".ljust(100, "."),
                        "client_id": None,
                        "reply_to": None,
                        "created_at": start + timedelta(seconds=seq),
                        "edited_at": None,
                        "deleted": False,
                    }
                    for seq in range(first, min(first + CHUNK, count + 1))
                ]
                connection.execute(statement, rows)
            connection.execute(
                update(conversations)
                .where(conversations.c.id == conversation_id)
                .values(last_seq=count, last_activity_at=start + timedelta(seconds=count))
            )
    finally:
        engine.dispose()
