"""Accounts and login sessions."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from convocore.domain.errors import Invalid, Unauthenticated
from convocore.domain.text import storable

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
DISPLAY_NAME_MAX = 64


@dataclass(slots=True, kw_only=True)
class User:
    id: str
    username: str
    display_name: str
    password_hash: str
    created_at: datetime

    @property
    def username_key(self) -> str:
        return normalize_username(self.username)


def normalize_username(username: str) -> str:
    """Usernames are unique case-insensitively; this is the key they are unique on."""
    return username.casefold()


def validate_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise Invalid("3 to 32 characters of letters, digits, '_', '.' or '-'", field="username")
    return username


def validate_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"{PASSWORD_MIN} to {PASSWORD_MAX} characters", field="password")
    return storable(password, field="password")


def validate_display_name(display_name: str | None, *, username: str) -> str:
    name = (display_name or "").strip() or username
    if len(name) > DISPLAY_NAME_MAX:
        raise Invalid(f"at most {DISPLAY_NAME_MAX} characters", field="display_name")
    return storable(name, field="display_name")


@dataclass(slots=True, kw_only=True)
class AuthSession:
    """One login: a pair of opaque tokens, kept only as hashes, rotated on refresh."""

    id: str
    user_id: str
    access_hash: str
    access_expires_at: datetime
    refresh_hash: str
    refresh_expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None = None

    def check_access(self, *, now: datetime) -> None:
        if self.revoked_at is not None or now >= self.access_expires_at:
            raise Unauthenticated("the access token is expired or revoked")

    def rotate(
        self, *, access_hash: str, refresh_hash: str, access_ttl_s: int, refresh_ttl_s: int, now: datetime
    ) -> None:
        if self.revoked_at is not None or now >= self.refresh_expires_at:
            raise Unauthenticated("the refresh token is expired or revoked")
        self.access_hash = access_hash
        self.refresh_hash = refresh_hash
        self.access_expires_at = now + timedelta(seconds=access_ttl_s)
        self.refresh_expires_at = now + timedelta(seconds=refresh_ttl_s)

    def revoke(self, *, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now
