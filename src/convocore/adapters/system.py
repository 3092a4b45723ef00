"""Clock, ids and opaque tokens from the standard library."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    def new_id(self) -> str:
        return str(uuid.uuid4())


class SecretTokenGenerator:
    """256 bits of randomness; SHA-256 is enough to store them, as they are not guessable."""

    def new_token(self) -> str:
        return secrets.token_urlsafe(32)

    def digest(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
