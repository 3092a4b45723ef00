"""Stored kinds and roles come back as the domain's enum members; anything else is refused."""

from datetime import UTC, datetime

import pytest

from convocore.adapters.sql.rows import conversation_from_record, conversation_values, member_from_record, member_values
from convocore.domain.conversations import Kind, Role

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("role", list(Role))
def test_a_stored_role_is_its_member(role: Role) -> None:
    member = member_from_record(("c", "u", role.value, NOW, 0))
    assert member.role is role


@pytest.mark.parametrize("kind", list(Kind))
def test_a_stored_kind_is_its_member(kind: Kind) -> None:
    conversation = conversation_from_record(("c", kind.value, None, False, "u", NOW, NOW, 0, 1, None))
    assert conversation.kind is kind


def test_an_unknown_role_or_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="boss"):
        member_from_record(("c", "u", "boss", NOW, 0))
    with pytest.raises(ValueError, match="channel"):
        conversation_from_record(("c", "channel", None, False, "u", NOW, NOW, 0, 1, None))


@pytest.mark.parametrize("role", list(Role))
def test_a_role_is_written_as_its_text(role: Role) -> None:
    member = member_from_record(("c", "u", role.value, NOW, 0))
    written = member_values(member)["role"]
    assert written == role.value and type(written) is str  # a str subclass would bind the slow way


@pytest.mark.parametrize("kind", list(Kind))
def test_a_kind_is_written_as_its_text(kind: Kind) -> None:
    conversation = conversation_from_record(("c", kind.value, None, False, "u", NOW, NOW, 0, 1, None))
    written = conversation_values(conversation)["kind"]
    assert written == kind.value and type(written) is str
