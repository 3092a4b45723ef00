"""Clock, ids and opaque tokens from the standard library."""

import hashlib
import os
import secrets
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# A version-4 UUID's fixed bits, the version nibble and the RFC 4122 variant, and their values
# (0100 and 10); every other bit of the 128 is random.
_V4_FIXED = (0xF << 76) | (0x3 << 62)
_V4_SET = (0x4 << 76) | (0x2 << 62)


class UuidGenerator:
    def new_id(self) -> str:
        """``str(uuid.uuid4())`` without building a ``UUID`` object (every post takes one): 122
        random bits from ``os.urandom``, as ``uuid4`` draws them, in its canonical text form."""
        digits = (int.from_bytes(os.urandom(16)) & ~_V4_FIXED | _V4_SET).to_bytes(16).hex()
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class SecretTokenGenerator:
    """256 bits of randomness; SHA-256 is enough to store them, as they are not guessable."""

    def new_token(self) -> str:
        return secrets.token_urlsafe(32)

    def digest(self, token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()
