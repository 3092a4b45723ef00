"""HTTP handlers for conversations and membership."""

from litestar import Response, Router, delete, get, patch, post

from convocore.domain.conversations import Kind, Role
from convocore.entrypoints import schemas as s
from convocore.entrypoints.deps import AUTHENTICATED, Caller, Cursor, FromPath, JSONBody, Limit, Query, Services
from convocore.entrypoints.http_accounts import AUTH, SECURED
from convocore.entrypoints.openapi import WITH_BODY, WITH_TOKEN, also, problems


@post(
    "/",
    summary="Start a direct or group conversation (a pair's direct one is reused)",
    responses=problems(WITH_TOKEN, WITH_BODY) | also(200, s.ConversationOut, "The pair's existing direct conversation"),
)
async def start(
    principal: Caller, container: Services, data: JSONBody[s.StartConversationIn]
) -> Response[s.ConversationOut]:
    detail, created = await container.start_conversation().execute(
        user_id=principal.user_id,
        kind=Kind(data.kind),
        members=data.members,
        title=data.title,
        public=data.public,
    )
    return Response(s.conversation_out(detail), status_code=201 if created else 200)


@get("/", summary="The caller's inbox, most recent activity first", responses=problems(WITH_TOKEN, 422))
async def inbox(principal: Caller, container: Services, cursor: Cursor = None, limit: Limit = 50) -> s.InboxPage:
    entries, after = await container.list_inbox().execute(
        user_id=principal.user_id, before=s.decode_inbox_cursor(cursor), limit=limit
    )
    next_cursor = s.encode_cursor(after.last_activity_at, after.conversation_id) if after else None
    return s.InboxPage(items=[s.inbox_item_out(e) for e in entries], next_cursor=next_cursor)


@get("/public/", summary="Discover public groups by title", responses=problems(WITH_TOKEN, 422))
async def discover(
    principal: Caller, container: Services, q: Query = "", cursor: Cursor = None, limit: Limit = 50
) -> s.PublicPage:
    found, after = await container.discover_public().execute(query=q, after=s.decode_title_cursor(cursor), limit=limit)
    next_cursor = s.encode_cursor(after.title, after.conversation_id) if after else None
    return s.PublicPage(items=[s.public_out(c) for c in found], next_cursor=next_cursor)


@get(
    "/{conversation_id:str}/",
    summary="One conversation with its members and their roles",
    responses=problems(WITH_TOKEN, 404),
)
async def detail(principal: Caller, container: Services, conversation_id: FromPath[str]) -> s.ConversationOut:
    found = await container.get_conversation().execute(user_id=principal.user_id, conversation_id=conversation_id)
    return s.conversation_out(found)


@patch(
    "/{conversation_id:str}/",
    summary="Rename a group or make it public/private (owner or admin)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404),
)
async def update(
    principal: Caller,
    container: Services,
    conversation_id: FromPath[str],
    data: JSONBody[s.UpdateConversationIn],
) -> s.ConversationOut:
    changed = await container.update_conversation().execute(
        user_id=principal.user_id, conversation_id=conversation_id, title=data.title, public=data.public
    )
    return s.conversation_out(changed)


@post(
    "/{conversation_id:str}/members/",
    summary="Add a member (owner or admin)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404, 409) | also(200, s.MemberOut, "Already a member: unchanged"),
)
async def add_member(
    principal: Caller, container: Services, conversation_id: FromPath[str], data: JSONBody[s.AddMemberIn]
) -> Response[s.MemberOut]:
    member, created = await container.add_member().execute(
        user_id=principal.user_id,
        conversation_id=conversation_id,
        new_user_id=data.user_id,
        role=Role(data.role),
    )
    return Response(s.member_out(member), status_code=201 if created else 200)


@delete(
    "/{conversation_id:str}/members/{user_id:str}/",
    status_code=204,
    summary="Remove a member, or leave",
    responses=problems(WITH_TOKEN, 403, 404),
)
async def remove_member(
    principal: Caller, container: Services, conversation_id: FromPath[str], user_id: FromPath[str]
) -> None:
    await container.remove_member().execute(
        user_id=principal.user_id, conversation_id=conversation_id, target_user_id=user_id
    )


@patch(
    "/{conversation_id:str}/members/{user_id:str}/",
    summary="Change a member's role (owner)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404),
)
async def change_role(
    principal: Caller,
    container: Services,
    conversation_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[s.ChangeRoleIn],
) -> s.MemberOut:
    member = await container.change_role().execute(
        user_id=principal.user_id,
        conversation_id=conversation_id,
        target_user_id=user_id,
        role=Role(data.role),
    )
    return s.member_out(member)


@post(
    "/{conversation_id:str}/join/",
    summary="Join a public group",
    responses=problems(WITH_TOKEN, 404, 409) | also(200, s.MemberOut, "Already a member: unchanged"),
)
async def join(principal: Caller, container: Services, conversation_id: FromPath[str]) -> Response[s.MemberOut]:
    member, created = await container.join_conversation().execute(
        user_id=principal.user_id, conversation_id=conversation_id
    )
    return Response(s.member_out(member), status_code=201 if created else 200)


@post(
    "/{conversation_id:str}/read/",
    status_code=200,
    summary="Move the caller's read marker forward",
    responses=problems(WITH_TOKEN, WITH_BODY, 404),
)
async def mark_read(
    principal: Caller, container: Services, conversation_id: FromPath[str], data: JSONBody[s.MarkReadIn]
) -> s.ReadOut:
    member, last_seq = await container.mark_read().execute(
        user_id=principal.user_id, conversation_id=conversation_id, seq=data.seq
    )
    return s.ReadOut(
        conversation_id=conversation_id,
        user_id=member.user_id,
        last_read_seq=member.last_read_seq,
        last_seq=last_seq,
        unread_count=max(last_seq - member.last_read_seq, 0),
    )


@get("/{conversation_id:str}/presence/", summary="Which members are online now", responses=problems(WITH_TOKEN, 404))
async def presence(principal: Caller, container: Services, conversation_id: FromPath[str]) -> s.PresenceOut:
    online = await container.who_is_online().execute(user_id=principal.user_id, conversation_id=conversation_id)
    return s.PresenceOut(conversation_id=conversation_id, online=online)


router = Router(
    path="/api/conversations",
    route_handlers=[
        start,
        inbox,
        discover,
        detail,
        update,
        add_member,
        remove_member,
        change_role,
        join,
        mark_read,
        presence,
    ],
    dependencies=AUTH,
    middleware=AUTHENTICATED,
    security=SECURED,
    tags=["conversations"],
)
