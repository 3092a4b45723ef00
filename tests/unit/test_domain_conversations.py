"""Conversation and membership rules, without storage."""

from datetime import UTC, datetime, timedelta

import pytest

from convocore.domain.conversations import (
    MAX_GROUP_MEMBERS,
    Conversation,
    Kind,
    Member,
    Role,
    direct_key,
    require_member,
)
from convocore.domain.errors import Conflict, Forbidden, Invalid, NotFound

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def a_group(*, public: bool = False) -> tuple[Conversation, Member, Member, Member]:
    """A group with an owner, an admin and a plain member."""
    group = Conversation.start_group(id="g", creator="owner", title="team", public=public, now=NOW)
    owner = group.admit(user_id="owner", role=Role.OWNER, now=NOW)
    admin = group.admit(user_id="admin", role=Role.ADMIN, now=NOW)
    member = group.admit(user_id="member", role=Role.MEMBER, now=NOW)
    return group, owner, admin, member


def a_direct() -> tuple[Conversation, Member, Member]:
    direct = Conversation.start_direct(id="d", creator="ann", other="bob", now=NOW)
    return (
        direct,
        direct.admit(user_id="ann", role=Role.MEMBER, now=NOW),
        direct.admit(user_id="bob", role=Role.MEMBER, now=NOW),
    )


def test_a_pair_has_one_direct_key_whoever_starts() -> None:
    assert direct_key("ann", "bob") == direct_key("bob", "ann")
    assert direct_key("ann", "bob") != direct_key("ann", "cat")


def test_a_direct_conversation_is_private_untitled_and_keyed_on_the_pair() -> None:
    direct = Conversation.start_direct(id="d", creator="bob", other="ann", now=NOW)

    assert direct.kind is Kind.DIRECT
    assert (direct.title, direct.public) == (None, False)
    assert direct.direct_key == direct_key("ann", "bob")
    assert direct.last_activity_at == NOW


def test_a_direct_conversation_with_oneself_is_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        Conversation.start_direct(id="d", creator="ann", other="ann", now=NOW)

    assert caught.value.field == "members"


def test_a_group_title_is_trimmed() -> None:
    group = Conversation.start_group(id="g", creator="ann", title="  Book club  ", public=True, now=NOW)

    assert group.title == "Book club"
    assert group.kind is Kind.GROUP
    assert group.public is True


@pytest.mark.parametrize("title", [None, "", "   ", "x" * 201, " " + "x" * 201])
def test_a_group_needs_a_title_of_at_most_200_characters(title: str | None) -> None:
    with pytest.raises(Invalid) as caught:
        Conversation.start_group(id="g", creator="ann", title=title, public=False, now=NOW)

    assert caught.value.field == "title"


def test_a_title_of_exactly_200_characters_after_trimming_is_accepted() -> None:
    group = Conversation.start_group(id="g", creator="ann", title=" " + "x" * 200 + " ", public=False, now=NOW)

    assert group.title == "x" * 200


def test_a_new_member_counts_and_has_read_everything_sent_so_far() -> None:
    group, *_ = a_group()
    group.record_activity(now=NOW)
    group.record_activity(now=NOW)

    newcomer = group.admit(user_id="new", role=Role.MEMBER, now=NOW)

    assert group.member_count == 4
    assert newcomer.last_read_seq == 2
    assert (newcomer.conversation_id, newcomer.joined_at) == ("g", NOW)


def test_a_full_conversation_admits_no_one() -> None:
    group, *_ = a_group()
    group.member_count = MAX_GROUP_MEMBERS

    with pytest.raises(Conflict) as caught:
        group.admit(user_id="one-too-many", role=Role.MEMBER, now=NOW)

    assert caught.value.field == "members"
    assert group.member_count == MAX_GROUP_MEMBERS


def test_sequence_numbers_count_up_and_record_the_activity() -> None:
    group, *_ = a_group()
    later = NOW + timedelta(minutes=5)

    seqs = [group.record_activity(now=NOW), group.record_activity(now=NOW), group.record_activity(now=later)]

    assert seqs == [1, 2, 3]
    assert group.last_seq == 3
    assert group.last_activity_at == later


def test_the_read_marker_moves_forward_only_and_never_past_the_end() -> None:
    _, _, _, member = a_group()

    member.mark_read(seq=5, last_seq=10)
    member.mark_read(seq=3, last_seq=10)
    assert member.last_read_seq == 5

    member.mark_read(seq=99, last_seq=10)
    assert member.last_read_seq == 10


def test_a_negative_read_marker_is_invalid() -> None:
    _, _, _, member = a_group()

    with pytest.raises(Invalid) as caught:
        member.mark_read(seq=-1, last_seq=10)

    assert caught.value.field == "seq"
    assert member.last_read_seq == 0


def test_owners_and_admins_manage_members_do_not() -> None:
    _, owner, admin, member = a_group()

    assert (owner.manages, admin.manages, member.manages) == (True, True, False)


def test_owners_and_admins_rename_and_publish_a_group() -> None:
    group, owner, admin, _ = a_group()

    group.rename(actor=admin, title="  renamed ")
    group.set_public(actor=owner, public=True)

    assert (group.title, group.public) == ("renamed", True)


def test_a_plain_member_may_not_rename_or_publish_a_group() -> None:
    group, _, _, member = a_group()

    with pytest.raises(Forbidden):
        group.rename(actor=member, title="mine")
    with pytest.raises(Forbidden):
        group.set_public(actor=member, public=True)

    assert (group.title, group.public) == ("team", False)


def test_a_direct_conversation_cannot_be_renamed_published_or_grown() -> None:
    direct, ann, _ = a_direct()

    with pytest.raises(Forbidden):
        direct.rename(actor=ann, title="us")
    with pytest.raises(Forbidden):
        direct.set_public(actor=ann, public=True)
    with pytest.raises(Forbidden):
        direct.add(actor=ann, user_id="cat", role=Role.MEMBER, now=NOW)

    assert direct.member_count == 2


def test_admins_add_members_but_only_the_owner_adds_admins() -> None:
    group, owner, admin, _ = a_group()

    added = group.add(actor=admin, user_id="new", role=Role.MEMBER, now=NOW)
    appointed = group.add(actor=owner, user_id="deputy", role=Role.ADMIN, now=NOW)
    with pytest.raises(Forbidden):
        group.add(actor=admin, user_id="other", role=Role.ADMIN, now=NOW)

    assert (added.role, appointed.role) == (Role.MEMBER, Role.ADMIN)
    assert group.member_count == 5


def test_nobody_adds_a_second_owner_nor_does_a_plain_member_add_anyone() -> None:
    group, owner, _, member = a_group()

    with pytest.raises(Forbidden):
        group.add(actor=owner, user_id="new", role=Role.OWNER, now=NOW)
    with pytest.raises(Forbidden):
        group.add(actor=member, user_id="new", role=Role.MEMBER, now=NOW)

    assert group.member_count == 3


def test_anyone_joins_a_public_group_as_a_plain_member() -> None:
    group, *_ = a_group(public=True)

    joined = group.join(user_id="new", now=NOW)

    assert joined.role is Role.MEMBER
    assert group.member_count == 4


def test_private_groups_and_direct_conversations_cannot_be_joined() -> None:
    group, *_ = a_group(public=False)
    direct, *_ = a_direct()

    with pytest.raises(NotFound):
        group.join(user_id="new", now=NOW)
    with pytest.raises(NotFound):
        direct.join(user_id="new", now=NOW)

    assert (group.member_count, direct.member_count) == (3, 2)


def test_an_admin_removes_a_plain_member() -> None:
    group, _, admin, member = a_group()

    promoted = group.remove(actor=admin, target=member, successor=None)

    assert promoted is None
    assert group.member_count == 2


@pytest.mark.parametrize(("actor", "target"), [("admin", "owner"), ("admin", "other_admin"), ("member", "admin")])
def test_removals_above_ones_station_are_forbidden(actor: str, target: str) -> None:
    group, owner, admin, member = a_group()
    other_admin = group.admit(user_id="admin2", role=Role.ADMIN, now=NOW)
    cast = {"owner": owner, "admin": admin, "other_admin": other_admin, "member": member}

    with pytest.raises(Forbidden):
        group.remove(actor=cast[actor], target=cast[target], successor=None)

    assert group.member_count == 4


def test_a_plain_member_may_not_remove_another_plain_member() -> None:
    group, _, _, member = a_group()
    other = group.admit(user_id="other", role=Role.MEMBER, now=NOW)

    with pytest.raises(Forbidden):
        group.remove(actor=member, target=other, successor=None)


def test_the_owner_removes_an_admin() -> None:
    group, owner, admin, _ = a_group()

    assert group.remove(actor=owner, target=admin, successor=None) is None
    assert group.member_count == 2


def test_anyone_may_leave() -> None:
    group, _, _, member = a_group()

    group.remove(actor=member, target=member, successor=None)

    assert group.member_count == 2


def test_an_owner_who_leaves_hands_the_group_to_the_successor() -> None:
    group, owner, admin, _ = a_group()

    promoted = group.remove(actor=owner, target=owner, successor=admin)

    assert promoted is admin
    assert admin.role is Role.OWNER


def test_nobody_leaves_a_direct_conversation() -> None:
    direct, ann, _ = a_direct()

    with pytest.raises(Forbidden):
        direct.remove(actor=ann, target=ann, successor=None)

    assert direct.member_count == 2


def test_only_the_owner_changes_roles() -> None:
    group, _, admin, member = a_group()

    with pytest.raises(Forbidden):
        group.change_role(actor=admin, target=member, role=Role.ADMIN)

    assert member.role is Role.MEMBER


def test_the_owner_promotes_and_demotes() -> None:
    group, owner, admin, member = a_group()

    assert group.change_role(actor=owner, target=member, role=Role.ADMIN) is None
    assert group.change_role(actor=owner, target=admin, role=Role.MEMBER) is None

    assert (member.role, admin.role, owner.role) == (Role.ADMIN, Role.MEMBER, Role.OWNER)


def test_naming_a_new_owner_demotes_the_old_one_to_admin() -> None:
    group, owner, _, member = a_group()

    demoted = group.change_role(actor=owner, target=member, role=Role.OWNER)

    assert demoted is owner
    assert (member.role, owner.role) == (Role.OWNER, Role.ADMIN)


def test_the_owner_cannot_demote_themselves_but_may_restate_ownership() -> None:
    group, owner, _, _ = a_group()

    assert group.change_role(actor=owner, target=owner, role=Role.OWNER) is None
    with pytest.raises(Forbidden):
        group.change_role(actor=owner, target=owner, role=Role.MEMBER)

    assert owner.role is Role.OWNER


def test_roles_do_not_exist_in_a_direct_conversation() -> None:
    direct, ann, bob = a_direct()

    with pytest.raises(Forbidden):
        direct.change_role(actor=ann, target=bob, role=Role.ADMIN)

    assert bob.role is Role.MEMBER


def test_a_non_member_learns_nothing() -> None:
    _, _, _, member = a_group()

    assert require_member(member) is member
    with pytest.raises(NotFound):
        require_member(None)


def test_the_first_to_join_an_abandoned_public_group_owns_it() -> None:
    group, owner, admin, member = a_group(public=True)
    for leaver in (member, admin, owner):
        group.remove(actor=leaver, target=leaver, successor=None)

    comer = group.join(user_id="new", now=NOW)

    assert comer.role is Role.OWNER
    assert group.member_count == 1


def test_only_managers_of_a_group_may_change_its_settings() -> None:
    group, owner, admin, member = a_group()
    direct, ann, _ = a_direct()

    group.authorize_update(actor=owner)
    group.authorize_update(actor=admin)
    with pytest.raises(Forbidden):
        group.authorize_update(actor=member)
    with pytest.raises(Forbidden):
        direct.authorize_update(actor=ann)
