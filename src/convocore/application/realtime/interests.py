"""Who must hear of an event, by interest: a conversation ('c:<id>'), a user ('u:<id>') or
everyone's presence. A process follows the interests it has sockets for (``Broadcaster.follow``);
an event goes to each of its interests."""

from convocore.domain import events as ev
from convocore.domain.events import Event

PRESENCE = "presence"


def of_conversation(conversation_id: str) -> str:
    return f"c:{conversation_id}"


def of_user(user_id: str) -> str:
    return f"u:{user_id}"


def interests_of(event: Event) -> list[str]:
    """Membership changes also go to the member's user interest, so that person's user socket
    elsewhere learns of a conversation it did not follow yet."""
    match event:
        case ev.MemberJoined(conversation_id=cid, member=member):
            return [of_conversation(cid), of_user(member.user_id)]
        case ev.MemberLeft(conversation_id=cid, user_id=uid):
            return [of_conversation(cid), of_user(uid)]
        case ev.SessionRevoked(user_id=uid):
            return [of_user(uid)]
        case ev.PresenceChanged():
            return [PRESENCE]
        case _:
            return [of_conversation(event.conversation_id)]
