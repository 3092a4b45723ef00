"""HTTP handlers for conversations and membership."""

from litestar import Response, Router, delete, get, patch, post

from convocore.application import conversations as c
from convocore.application.realtime.use_cases import WhoIsOnline
from convocore.domain.conversations import Kind, Role
from convocore.entrypoints import present as p
from convocore.entrypoints.deps import AUTHENTICATED, SECURED, Caller, Cursor, JSONBody, Limit, PathId, Query, Use
from convocore.entrypoints.openapi import WITH_BODY, WITH_PATH, WITH_TOKEN, also, problems
from convocore.wire import schemas as s


@post(
    "/",
    summary="Start a direct or group conversation (a pair's direct one is reused)",
    responses=problems(WITH_TOKEN, WITH_BODY) | also(200, s.ConversationOut, "The pair's existing direct conversation"),
)
async def start(
    request: Caller, start_conversation: Use[c.StartConversation], data: JSONBody[s.StartConversationIn]
) -> Response[s.ConversationOut]:
    detail, created = await start_conversation.execute(
        user_id=request.user.user_id,
        kind=Kind(data.kind),
        members=data.members,
        title=data.title,
        public=data.public,
    )
    return Response(p.conversation_out(detail), status_code=201 if created else 200)


@get("/", summary="The caller's inbox, most recent activity first", responses=problems(WITH_TOKEN, 422))
async def inbox(request: Caller, list_inbox: Use[c.ListInbox], cursor: Cursor = None, limit: Limit = 50) -> s.InboxPage:
    entries, after = await list_inbox.execute(
        user_id=request.user.user_id, before=p.decode_inbox_cursor(cursor), limit=limit
    )
    next_cursor = p.encode_cursor(after.last_activity_at, after.conversation_id) if after else None
    return s.InboxPage(items=[p.inbox_item_out(e) for e in entries], next_cursor=next_cursor)


@get("/public/", summary="Discover public groups by title", responses=problems(WITH_TOKEN, 422))
async def discover(
    discover_public: Use[c.DiscoverPublic], q: Query = "", cursor: Cursor = None, limit: Limit = 50
) -> s.PublicPage:
    found, after = await discover_public.execute(query=q, after=p.decode_title_cursor(cursor), limit=limit)
    next_cursor = p.encode_cursor(after.title, after.conversation_id) if after else None
    return s.PublicPage(items=[p.public_out(found_one) for found_one in found], next_cursor=next_cursor)


@get(
    "/{conversation_id:str}/",
    summary="One conversation with its members and their roles",
    responses=problems(WITH_TOKEN, WITH_PATH, 404),
)
async def detail(
    request: Caller, get_conversation: Use[c.GetConversation], conversation_id: PathId
) -> s.ConversationOut:
    found = await get_conversation.execute(user_id=request.user.user_id, conversation_id=conversation_id)
    return p.conversation_out(found)


@patch(
    "/{conversation_id:str}/",
    summary="Rename a group or make it public/private (owner or admin)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404),
)
async def update(
    request: Caller,
    update_conversation: Use[c.UpdateConversation],
    conversation_id: PathId,
    data: JSONBody[s.UpdateConversationIn],
) -> s.ConversationOut:
    changed = await update_conversation.execute(
        user_id=request.user.user_id, conversation_id=conversation_id, title=data.title, public=data.public
    )
    return p.conversation_out(changed)


@post(
    "/{conversation_id:str}/members/",
    summary="Add a member (owner or admin)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404, 409) | also(200, s.MemberOut, "Already a member: unchanged"),
)
async def add_member(
    request: Caller, add_member: Use[c.AddMember], conversation_id: PathId, data: JSONBody[s.AddMemberIn]
) -> Response[s.MemberOut]:
    member, created = await add_member.execute(
        user_id=request.user.user_id,
        conversation_id=conversation_id,
        new_user_id=data.user_id,
        role=Role(data.role),
    )
    return Response(p.member_out(member), status_code=201 if created else 200)


@delete(
    "/{conversation_id:str}/members/{user_id:str}/",
    status_code=204,
    summary="Remove a member, or leave",
    responses=problems(WITH_TOKEN, WITH_PATH, 403, 404),
)
async def remove_member(
    request: Caller, remove_member: Use[c.RemoveMember], conversation_id: PathId, user_id: PathId
) -> None:
    await remove_member.execute(user_id=request.user.user_id, conversation_id=conversation_id, target_user_id=user_id)


@patch(
    "/{conversation_id:str}/members/{user_id:str}/",
    summary="Change a member's role (owner)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404),
)
async def change_role(
    request: Caller,
    change_role: Use[c.ChangeRole],
    conversation_id: PathId,
    user_id: PathId,
    data: JSONBody[s.ChangeRoleIn],
) -> s.MemberOut:
    member = await change_role.execute(
        user_id=request.user.user_id,
        conversation_id=conversation_id,
        target_user_id=user_id,
        role=Role(data.role),
    )
    return p.member_out(member)


@post(
    "/{conversation_id:str}/join/",
    summary="Join a public group",
    responses=problems(WITH_TOKEN, WITH_PATH, 404, 409) | also(200, s.MemberOut, "Already a member: unchanged"),
)
async def join(
    request: Caller, join_conversation: Use[c.JoinConversation], conversation_id: PathId
) -> Response[s.MemberOut]:
    member, created = await join_conversation.execute(user_id=request.user.user_id, conversation_id=conversation_id)
    return Response(p.member_out(member), status_code=201 if created else 200)


@post(
    "/{conversation_id:str}/read/",
    status_code=200,
    summary="Move the caller's read marker forward",
    responses=problems(WITH_TOKEN, WITH_BODY, 404),
)
async def mark_read(
    request: Caller, mark_read: Use[c.MarkRead], conversation_id: PathId, data: JSONBody[s.MarkReadIn]
) -> s.ReadOut:
    member, last_seq = await mark_read.execute(
        user_id=request.user.user_id, conversation_id=conversation_id, seq=data.seq
    )
    return s.ReadOut(
        conversation_id=conversation_id,
        user_id=member.user_id,
        last_read_seq=member.last_read_seq,
        last_seq=last_seq,
        unread_count=max(last_seq - member.last_read_seq, 0),
    )


@get(
    "/{conversation_id:str}/presence/",
    summary="Which members are online now",
    responses=problems(WITH_TOKEN, WITH_PATH, 404),
)
async def presence(request: Caller, who_is_online: Use[WhoIsOnline], conversation_id: PathId) -> s.PresenceOut:
    online = await who_is_online.execute(user_id=request.user.user_id, conversation_id=conversation_id)
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
    middleware=AUTHENTICATED,
    security=SECURED,
    tags=["conversations"],
)
