"""Message rules, without storage."""

from datetime import UTC, datetime, timedelta

import pytest

from convocore.domain import messages
from convocore.domain.conversations import Conversation, Member, Role
from convocore.domain.errors import Conflict, Forbidden, Invalid
from convocore.domain.messages import BODY_MAX, Message, validate_body, validate_client_id

NOW = datetime(2024, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)


def a_group() -> tuple[Conversation, Member, Member, Member]:
    group = Conversation.start_group(id="g", creator="owner", title="team", public=False, now=NOW)
    return (
        group,
        group.admit(user_id="owner", role=Role.OWNER, now=NOW),
        group.admit(user_id="admin", role=Role.ADMIN, now=NOW),
        group.admit(user_id="member", role=Role.MEMBER, now=NOW),
    )


def post(group: Conversation, sender: Member, body: str = "hi", *, reply_to: int | None = None) -> Message:
    return messages.post(
        group, sender=sender, message_id=f"m{group.last_seq + 1}", body=body, client_id=None, reply_to=reply_to, now=NOW
    )


@pytest.mark.parametrize("body", ["", " ", "\n\t ", "x" * (BODY_MAX + 1)])
def test_empty_blank_or_overlong_bodies_are_invalid(body: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_body(body)

    assert caught.value.field == "body"


def test_a_body_is_kept_exactly_as_written_up_to_4000_characters() -> None:
    assert validate_body("  indented\n") == "  indented\n"
    assert validate_body("x" * BODY_MAX) == "x" * BODY_MAX


@pytest.mark.parametrize("client_id", ["", "x" * 65])
def test_client_ids_are_1_to_64_characters(client_id: str) -> None:
    assert validate_client_id(None) is None
    assert validate_client_id("x" * 64) == "x" * 64
    with pytest.raises(Invalid) as caught:
        validate_client_id(client_id)

    assert caught.value.field == "client_id"


def test_posting_allocates_the_next_seq_and_moves_the_senders_read_marker() -> None:
    group, _, _, member = a_group()
    post(group, member)

    message = messages.post(group, sender=member, message_id="m2", body="again", client_id="c-1", reply_to=1, now=LATER)

    assert (message.seq, message.reply_to, message.client_id) == (2, 1, "c-1")
    assert (message.sender_id, message.conversation_id, message.created_at) == ("member", "g", LATER)
    assert (message.edited_at, message.deleted) == (None, False)
    assert member.last_read_seq == 2
    assert (group.last_seq, group.last_activity_at) == (2, LATER)


@pytest.mark.parametrize("reply_to", [0, -1, 3])
def test_a_reply_must_point_at_an_existing_seq(reply_to: int) -> None:
    group, owner, _, _ = a_group()
    post(group, owner)
    post(group, owner)

    with pytest.raises(Invalid) as caught:
        post(group, owner, reply_to=reply_to)

    assert caught.value.field == "reply_to"
    assert group.last_seq == 2


def test_an_invalid_post_allocates_no_seq() -> None:
    group, owner, _, _ = a_group()

    with pytest.raises(Invalid):
        post(group, owner, body="   ")

    assert (group.last_seq, owner.last_read_seq) == (0, 0)


def test_the_author_edits_their_message() -> None:
    group, _, _, member = a_group()
    message = post(group, member, "frist")

    message.edit(actor=member, body="first", now=LATER)

    assert (message.body, message.edited_at) == ("first", LATER)


def test_nobody_else_edits_a_message_not_even_the_owner() -> None:
    group, owner, _, member = a_group()
    message = post(group, member, "mine")

    with pytest.raises(Forbidden):
        message.edit(actor=owner, body="theirs", now=LATER)

    assert (message.body, message.edited_at) == ("mine", None)


def test_an_edit_to_an_invalid_body_changes_nothing() -> None:
    group, _, _, member = a_group()
    message = post(group, member, "mine")

    with pytest.raises(Invalid):
        message.edit(actor=member, body=" ", now=LATER)

    assert (message.body, message.edited_at) == ("mine", None)


def test_a_deleted_message_cannot_be_edited() -> None:
    group, _, _, member = a_group()
    message = post(group, member, "mine")
    message.delete(actor=member, now=NOW)

    with pytest.raises(Conflict):
        message.edit(actor=member, body="back", now=LATER)

    assert message.body == ""


@pytest.mark.parametrize("deleter", ["member", "admin", "owner"])
def test_the_author_owner_or_an_admin_tombstones_a_message(deleter: str) -> None:
    group, owner, admin, member = a_group()
    message = post(group, member, "oops")

    gone = message.delete(actor={"member": member, "admin": admin, "owner": owner}[deleter], now=LATER)

    assert gone is True
    assert (message.seq, message.body, message.deleted) == (1, "", True)
    assert message.edited_at is None  # a tombstone is not an edit


def test_a_plain_member_may_not_delete_someone_elses_message() -> None:
    group, owner, _, member = a_group()
    message = post(group, owner, "rules")

    with pytest.raises(Forbidden):
        message.delete(actor=member, now=LATER)

    assert (message.body, message.deleted) == ("rules", False)


def test_deleting_twice_reports_nothing_new() -> None:
    group, _, _, member = a_group()
    message = post(group, member, "oops")
    message.delete(actor=member, now=NOW)

    again = message.delete(actor=member, now=LATER)

    assert again is False
    assert (message.body, message.deleted) == ("", True)
