"""Registering, logging in, tokens and finding people."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from convocore.application.accounts import Principal, PrincipalCache
from convocore.domain.errors import Conflict, Invalid, NotFound, Unauthenticated
from convocore.domain.events import SessionRevoked
from tests.support.wiring import PASSWORD, Chat, FrozenClock


@pytest.mark.parametrize(
    ("username", "password", "field"),
    [
        ("ab", PASSWORD, "username"),
        ("a" * 33, PASSWORD, "username"),
        ("no spaces", PASSWORD, "username"),
        ("ann", "short", "password"),
        ("ann", "x" * 129, "password"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(
    chat: Chat, username: str, password: str, field: str
) -> None:
    with pytest.raises(Invalid) as caught:
        await chat.register.execute(username=username, password=password)

    assert caught.value.field == field
    assert await chat.search_users.execute(prefix="", after=None, limit=10) == ([], None)


async def test_register_keeps_the_user_with_a_display_name_defaulting_to_the_username(chat: Chat) -> None:
    user = await chat.register.execute(username="Ann", password=PASSWORD)

    stored = await chat.get_user.execute(user_id=user.id)
    assert (stored.username, stored.display_name) == ("Ann", "Ann")


async def test_register_keeps_a_given_display_name(chat: Chat) -> None:
    user = await chat.register.execute(username="ann", password=PASSWORD, display_name=" Ann Smith ")

    assert (await chat.get_user.execute(user_id=user.id)).display_name == "Ann Smith"


async def test_the_password_is_stored_as_an_argon2id_hash(chat: Chat) -> None:
    user = await chat.sign_up("ann")

    stored = await chat.get_user.execute(user_id=user.id)
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


@pytest.mark.parametrize("taken", ["ann", "ANN", "aNn"])
async def test_usernames_are_unique_whatever_their_case(chat: Chat, taken: str) -> None:
    await chat.sign_up("Ann")

    with pytest.raises(Conflict) as caught:
        await chat.register.execute(username=taken, password=PASSWORD)

    assert caught.value.field == "username"
    users, _ = await chat.search_users.execute(prefix="", after=None, limit=10)
    assert [u.username for u in users] == ["Ann"]


async def test_two_concurrent_registrations_of_one_name_leave_one_user(chat: Chat) -> None:
    outcomes = await asyncio.gather(
        chat.register.execute(username="ann", password=PASSWORD),
        chat.register.execute(username="ANN", password=PASSWORD),
        return_exceptions=True,
    )

    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "User"]
    users, _ = await chat.search_users.execute(prefix="ann", after=None, limit=10)
    assert len(users) == 1


async def test_get_user_of_an_unknown_id_is_not_found(chat: Chat) -> None:
    with pytest.raises(NotFound):
        await chat.get_user.execute(user_id="nobody")


async def test_login_issues_a_working_pair_of_tokens(chat: Chat) -> None:
    ann = await chat.sign_up("ann")

    issued = await chat.log_in.execute(username="ann", password=PASSWORD)

    assert issued.user.id == ann.id
    assert issued.expires_in == chat.policy.access_ttl_s
    assert issued.access_token != issued.refresh_token
    principal = await chat.authenticate.execute(access_token=issued.access_token)
    assert principal.user_id == ann.id


async def test_login_ignores_the_case_of_the_username(chat: Chat) -> None:
    ann = await chat.sign_up("Ann")

    issued = await chat.log_in.execute(username="aNN", password=PASSWORD)

    assert issued.user.id == ann.id


async def test_a_wrong_password_and_an_unknown_user_fail_alike(chat: Chat) -> None:
    await chat.sign_up("ann")

    with pytest.raises(Unauthenticated) as wrong_password:
        await chat.log_in.execute(username="ann", password="not the password")
    with pytest.raises(Unauthenticated) as unknown_user:
        await chat.log_in.execute(username="nobody", password=PASSWORD)

    assert str(wrong_password.value) == str(unknown_user.value)
    assert wrong_password.value.detail == unknown_user.value.detail


async def test_each_login_is_its_own_session(chat: Chat) -> None:
    await chat.sign_up("ann")

    first = await chat.log_in.execute(username="ann", password=PASSWORD)
    second = await chat.log_in.execute(username="ann", password=PASSWORD)

    one = await chat.authenticate.execute(access_token=first.access_token)
    two = await chat.authenticate.execute(access_token=second.access_token)
    assert one.session_id != two.session_id


@pytest.mark.parametrize("token", ["", "made-up"])
async def test_authenticate_rejects_missing_or_unknown_tokens(chat: Chat, token: str) -> None:
    await chat.sign_up("ann")
    await chat.log_in.execute(username="ann", password=PASSWORD)

    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=token)


async def test_authenticate_rejects_a_refresh_token(chat: Chat) -> None:
    await chat.sign_up("ann")
    issued = await chat.log_in.execute(username="ann", password=PASSWORD)

    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=issued.refresh_token)


async def test_the_principal_knows_when_its_access_token_expires(timed_chat: Chat, clock: FrozenClock) -> None:
    await timed_chat.sign_up("ann")
    issued = await timed_chat.log_in.execute(username="ann", password=PASSWORD)

    principal = await timed_chat.authenticate.execute(access_token=issued.access_token)

    assert principal.expires_at == clock.now() + timedelta(seconds=timed_chat.policy.access_ttl_s)


async def test_an_access_token_expires_after_its_lifetime(timed_chat: Chat, clock: FrozenClock) -> None:
    await timed_chat.sign_up("ann")
    issued = await timed_chat.log_in.execute(username="ann", password=PASSWORD)
    clock.advance(seconds=timed_chat.policy.access_ttl_s - 1)
    await timed_chat.authenticate.execute(access_token=issued.access_token)

    clock.advance(seconds=1)

    with pytest.raises(Unauthenticated):
        await timed_chat.authenticate.execute(access_token=issued.access_token)


async def test_refresh_rotates_the_pair(chat: Chat) -> None:
    ann = await chat.sign_up("ann")
    old = await chat.log_in.execute(username="ann", password=PASSWORD)

    new = await chat.refresh.execute(refresh_token=old.refresh_token)

    assert new.user.id == ann.id
    assert {new.access_token, new.refresh_token}.isdisjoint({old.access_token, old.refresh_token})
    assert (await chat.authenticate.execute(access_token=new.access_token)).user_id == ann.id
    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=old.access_token)
    with pytest.raises(Unauthenticated):
        await chat.refresh.execute(refresh_token=old.refresh_token)


async def test_refresh_stops_an_access_token_that_was_just_accepted(chat: Chat) -> None:
    await chat.sign_up("ann")
    old = await chat.log_in.execute(username="ann", password=PASSWORD)
    await chat.authenticate.execute(access_token=old.access_token)  # now remembered

    new = await chat.refresh.execute(refresh_token=old.refresh_token)

    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=old.access_token)
    await chat.authenticate.execute(access_token=new.access_token)


async def test_a_session_ended_by_another_process_is_refused_once_the_remembered_token_runs_out(
    timed_chat: Chat, clock: FrozenClock
) -> None:
    await timed_chat.sign_up("ann")
    issued = await timed_chat.log_in.execute(username="ann", password=PASSWORD)
    principal = await timed_chat.authenticate.execute(access_token=issued.access_token)
    async with timed_chat.uow() as uow:  # as another process sharing the database would
        session = await uow.sessions.get(principal.session_id)
        assert session is not None
        session.revoke(now=clock.now())
        await uow.sessions.save(session)
        await uow.commit()

    clock.advance(seconds=4)
    assert await timed_chat.authenticate.execute(access_token=issued.access_token) == principal  # remembered
    clock.advance(seconds=1)
    with pytest.raises(Unauthenticated):
        await timed_chat.authenticate.execute(access_token=issued.access_token)


async def test_the_rotated_refresh_token_rotates_again(chat: Chat) -> None:
    await chat.sign_up("ann")
    first = await chat.log_in.execute(username="ann", password=PASSWORD)
    second = await chat.refresh.execute(refresh_token=first.refresh_token)

    third = await chat.refresh.execute(refresh_token=second.refresh_token)

    await chat.authenticate.execute(access_token=third.access_token)
    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=second.access_token)


async def test_one_refresh_token_rotates_only_once_even_when_raced(chat: Chat) -> None:
    await chat.sign_up("ann")
    issued = await chat.log_in.execute(username="ann", password=PASSWORD)

    outcomes = await asyncio.gather(
        chat.refresh.execute(refresh_token=issued.refresh_token),
        chat.refresh.execute(refresh_token=issued.refresh_token),
        return_exceptions=True,
    )

    assert sorted(type(o).__name__ for o in outcomes) == ["IssuedTokens", "Unauthenticated"]


async def test_refresh_extends_an_expired_access_token(timed_chat: Chat, clock: FrozenClock) -> None:
    await timed_chat.sign_up("ann")
    old = await timed_chat.log_in.execute(username="ann", password=PASSWORD)
    clock.advance(seconds=timed_chat.policy.access_ttl_s + 1)

    new = await timed_chat.refresh.execute(refresh_token=old.refresh_token)

    await timed_chat.authenticate.execute(access_token=new.access_token)


async def test_an_expired_refresh_token_is_refused(timed_chat: Chat, clock: FrozenClock) -> None:
    await timed_chat.sign_up("ann")
    issued = await timed_chat.log_in.execute(username="ann", password=PASSWORD)
    clock.advance(seconds=timed_chat.policy.refresh_ttl_s)

    with pytest.raises(Unauthenticated):
        await timed_chat.refresh.execute(refresh_token=issued.refresh_token)


@pytest.mark.parametrize("use_access_token", [True, False])
async def test_refresh_refuses_unknown_tokens(chat: Chat, use_access_token: bool) -> None:
    await chat.sign_up("ann")
    issued = await chat.log_in.execute(username="ann", password=PASSWORD)

    with pytest.raises(Unauthenticated):
        await chat.refresh.execute(refresh_token=issued.access_token if use_access_token else "made-up")

    await chat.refresh.execute(refresh_token=issued.refresh_token)


async def test_logout_revokes_the_session_at_once(chat: Chat) -> None:
    await chat.sign_up("ann")
    issued = await chat.log_in.execute(username="ann", password=PASSWORD)
    principal = await chat.authenticate.execute(access_token=issued.access_token)

    await chat.log_out.execute(principal=principal)

    with pytest.raises(Unauthenticated):
        await chat.authenticate.execute(access_token=issued.access_token)
    with pytest.raises(Unauthenticated):
        await chat.refresh.execute(refresh_token=issued.refresh_token)
    assert chat.events == [SessionRevoked(user_id=principal.user_id, session_id=principal.session_id)]


async def test_logout_ends_only_its_own_session(chat: Chat) -> None:
    await chat.sign_up("ann")
    phone = await chat.log_in.execute(username="ann", password=PASSWORD)
    laptop = await chat.log_in.execute(username="ann", password=PASSWORD)

    await chat.log_out.execute(principal=await chat.authenticate.execute(access_token=phone.access_token))

    await chat.authenticate.execute(access_token=laptop.access_token)


async def test_search_matches_a_prefix_ignoring_case_in_username_order(chat: Chat) -> None:
    await chat.people("alice", "ALBERT", "Alan", "bob", "malcolm")

    users, cursor = await chat.search_users.execute(prefix="aL", after=None, limit=10)

    assert [u.username for u in users] == ["Alan", "ALBERT", "alice"]
    assert cursor is None


async def test_search_pages_through_every_match_exactly_once(chat: Chat) -> None:
    names = [f"user{i:02d}" for i in range(11)]
    await chat.people(*names, "zed", "use")
    seen: list[str] = []
    cursor: str | None = None

    for _ in range(10):
        page, cursor = await chat.search_users.execute(prefix="USER", after=cursor, limit=3)
        seen += [u.username for u in page]
        if cursor is None:
            break

    assert seen == names


async def test_a_full_last_page_has_no_next_cursor(chat: Chat) -> None:
    await chat.people("ann1", "ann2", "ann3", "ann4")

    first, cursor = await chat.search_users.execute(prefix="ann", after=None, limit=2)
    second, end = await chat.search_users.execute(prefix="ann", after=cursor, limit=2)

    assert [u.username for u in first + second] == ["ann1", "ann2", "ann3", "ann4"]
    assert cursor is not None
    assert end is None


async def test_search_rejects_an_overlong_prefix(chat: Chat) -> None:
    with pytest.raises(Invalid) as caught:
        await chat.search_users.execute(prefix="x" * 33, after=None, limit=10)

    assert caught.value.field == "q"


def test_the_principal_cache_stays_bounded() -> None:
    now = [0.0]
    cache = PrincipalCache(ttl_s=5, max_entries=2, monotonic=lambda: now[0])
    who = [
        Principal(user_id=f"u{i}", session_id=f"s{i}", expires_at=datetime(2030, 1, 1, tzinfo=UTC)) for i in range(4)
    ]
    cache.put("d0", who[0])
    now[0] = 4.0
    cache.put("d1", who[1])
    now[0] = 6.0  # d0 has run out, d1 has not
    cache.put("d2", who[2])
    assert (cache.get("d0"), cache.get("d1"), cache.get("d2")) == (None, who[1], who[2])
    cache.put("d3", who[3])  # full of live entries: start again rather than grow
    assert (cache.get("d1"), cache.get("d2"), cache.get("d3")) == (None, None, who[3])
