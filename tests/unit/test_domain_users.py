"""Account and session rules, without storage."""

from datetime import UTC, datetime, timedelta

import pytest

from convocore.domain.errors import Invalid, Unauthenticated
from convocore.domain.users import (
    AuthSession,
    User,
    normalize_username,
    validate_display_name,
    validate_password,
    validate_username,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def a_session(*, access_ttl: int = 60, refresh_ttl: int = 600) -> AuthSession:
    return AuthSession(
        id="s1",
        user_id="u1",
        access_hash="a0",
        access_expires_at=NOW + timedelta(seconds=access_ttl),
        refresh_hash="r0",
        refresh_expires_at=NOW + timedelta(seconds=refresh_ttl),
        created_at=NOW,
    )


@pytest.mark.parametrize("username", ["abc", "a" * 32, "Ann_B.c-9", "___", "..."])
def test_usernames_of_3_to_32_allowed_characters_are_accepted(username: str) -> None:
    assert validate_username(username) == username


@pytest.mark.parametrize(
    "username", ["", "ab", "a" * 33, "with space", "émile", "bang!", "tab\tname", "trailing\n", "a/b"]
)
def test_other_usernames_are_invalid_and_name_the_field(username: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_username(username)

    assert caught.value.field == "username"


@pytest.mark.parametrize("password", ["x" * 8, "x" * 128, "pässwörd"])
def test_passwords_of_8_to_128_characters_are_accepted(password: str) -> None:
    assert validate_password(password) == password


@pytest.mark.parametrize("password", ["", "x" * 7, "x" * 129])
def test_shorter_or_longer_passwords_are_invalid_and_name_the_field(password: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_password(password)

    assert caught.value.field == "password"


@pytest.mark.parametrize("display_name", [None, "", "   "])
def test_a_missing_display_name_falls_back_to_the_username(display_name: str | None) -> None:
    assert validate_display_name(display_name, username="ann") == "ann"


def test_a_display_name_is_trimmed() -> None:
    assert validate_display_name("  Ann Smith ", username="ann") == "Ann Smith"


def test_a_display_name_over_64_characters_is_invalid() -> None:
    assert validate_display_name("x" * 64, username="ann") == "x" * 64
    with pytest.raises(Invalid) as caught:
        validate_display_name("x" * 65, username="ann")

    assert caught.value.field == "display_name"


def test_usernames_are_keyed_case_insensitively() -> None:
    user = User(id="u1", username="Ann.B", display_name="Ann", password_hash="h", created_at=NOW)

    assert user.username_key == normalize_username("ANN.b") == "ann.b"


def test_an_access_token_works_until_it_expires() -> None:
    session = a_session(access_ttl=60)

    session.check_access(now=NOW + timedelta(seconds=59))
    with pytest.raises(Unauthenticated):
        session.check_access(now=NOW + timedelta(seconds=60))


def test_a_revoked_session_rejects_its_access_token() -> None:
    session = a_session()

    session.revoke(now=NOW)

    with pytest.raises(Unauthenticated):
        session.check_access(now=NOW)


def test_revoking_twice_keeps_the_first_time() -> None:
    session = a_session()
    session.revoke(now=NOW)

    session.revoke(now=NOW + timedelta(seconds=5))

    assert session.revoked_at == NOW


def test_rotating_replaces_both_hashes_and_restarts_both_lifetimes() -> None:
    session = a_session(access_ttl=60, refresh_ttl=600)
    later = NOW + timedelta(seconds=300)

    session.rotate(access_hash="a1", refresh_hash="r1", access_ttl_s=60, refresh_ttl_s=600, now=later)

    assert (session.access_hash, session.refresh_hash) == ("a1", "r1")
    assert session.access_expires_at == later + timedelta(seconds=60)
    assert session.refresh_expires_at == later + timedelta(seconds=600)


def test_an_expired_refresh_token_cannot_rotate() -> None:
    session = a_session(refresh_ttl=600)

    with pytest.raises(Unauthenticated):
        session.rotate(
            access_hash="a1", refresh_hash="r1", access_ttl_s=60, refresh_ttl_s=600, now=NOW + timedelta(seconds=600)
        )

    assert (session.access_hash, session.refresh_hash) == ("a0", "r0")


def test_a_revoked_session_cannot_rotate() -> None:
    session = a_session()
    session.revoke(now=NOW)

    with pytest.raises(Unauthenticated):
        session.rotate(access_hash="a1", refresh_hash="r1", access_ttl_s=60, refresh_ttl_s=600, now=NOW)

    assert session.refresh_hash == "r0"
