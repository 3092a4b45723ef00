"""HTTP handlers for messages."""

from litestar import Response, Router, delete, get, patch, post

from convocore.application.messages import DeleteMessage, EditMessage, ListMessages, PostMessage
from convocore.entrypoints import present as p
from convocore.entrypoints.deps import AUTHENTICATED, SECURED, Caller, JSONBody, Limit, PathId, PathSeq, SeqBound, Use
from convocore.entrypoints.openapi import WITH_BODY, WITH_PATH, WITH_TOKEN, also, problems
from convocore.wire import schemas as s


@post(
    "/",
    summary="Send a message (idempotent per client_id)",
    responses=problems(WITH_TOKEN, WITH_BODY, 404, 409) | also(200, s.MessageOut, "A repeated client_id: the original"),
)
async def send(
    request: Caller, post_message: Use[PostMessage], data: JSONBody[s.PostMessageIn]
) -> Response[s.MessageOut]:
    posted = await post_message.execute(
        user_id=request.user.user_id,
        conversation_id=data.conversation_id,
        body=data.body,
        client_id=data.client_id,
        reply_to=data.reply_to,
    )
    return Response(p.message_out(posted.message), status_code=201 if posted.created else 200)


@get(
    "/{conversation_id:str}/",
    summary="A page of history, ascending seq; keyset on seq",
    responses=problems(WITH_TOKEN, 404, 422),
)
async def history(
    request: Caller,
    list_messages: Use[ListMessages],
    conversation_id: PathId,
    before: SeqBound = None,
    after: SeqBound = None,
    limit: Limit = 50,
) -> s.MessagePage:
    items, has_more = await list_messages.execute(
        user_id=request.user.user_id, conversation_id=conversation_id, before=before, after=after, limit=limit
    )
    return s.MessagePage(items=[p.message_out(m) for m in items], has_more=has_more)


@patch(
    "/{conversation_id:str}/{seq:int}/",
    summary="Edit a message (author)",
    responses=problems(WITH_TOKEN, WITH_BODY, 403, 404, 409),
)
async def edit(
    request: Caller,
    edit_message: Use[EditMessage],
    conversation_id: PathId,
    seq: PathSeq,
    data: JSONBody[s.EditMessageIn],
) -> s.MessageOut:
    message = await edit_message.execute(
        user_id=request.user.user_id, conversation_id=conversation_id, seq=seq, body=data.body
    )
    return p.message_out(message)


@delete(
    "/{conversation_id:str}/{seq:int}/",
    status_code=200,
    summary="Delete a message: a tombstone keeps its seq",
    responses=problems(WITH_TOKEN, WITH_PATH, 403, 404),
)
async def remove(
    request: Caller, delete_message: Use[DeleteMessage], conversation_id: PathId, seq: PathSeq
) -> s.MessageOut:
    message = await delete_message.execute(user_id=request.user.user_id, conversation_id=conversation_id, seq=seq)
    return p.message_out(message)


router = Router(
    path="/api/messages",
    route_handlers=[send, history, edit, remove],
    middleware=AUTHENTICATED,
    security=SECURED,
    tags=["messages"],
)
