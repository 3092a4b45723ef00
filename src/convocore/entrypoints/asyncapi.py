"""The AsyncAPI 3.0 document of the two sockets, built from the frame Structs themselves so the
schemas cannot drift from the code. It describes the server: client frames are operations it
``receive``s, server frames operations it ``send``s. The prose lives in docs/realtime.md."""

import functools
import typing
from typing import Any

import msgspec
from litestar import get

from convocore import __version__
from convocore.entrypoints import sockets
from convocore.entrypoints.settings import Settings
from convocore.wire import frames as f

SCHEMA_REF = "#/components/schemas/{name}"

SUMMARIES: dict[type[msgspec.Struct], str] = {
    f.MessageSend: "Post a message; answered by an ack (or an error frame) on this socket.",
    f.Ping: "Application-level ping; answered by a pong.",
    f.Typing: "The sender is typing; relayed to the conversation, never stored, rate limited.",
    f.Resume: "Replay each named conversation from just after the given seq, then continue live.",
    f.MessageCreatedFrame: "A message was posted. Per conversation: strictly increasing seq, no gap, no repeat.",
    f.MessageUpdatedFrame: "A message was edited; carries its original seq.",
    f.MessageDeletedFrame: "A message was deleted (the tombstone); carries its original seq.",
    f.MemberJoinedFrame: "Someone was added or joined; `user` is their profile (null if unknown).",
    f.MemberLeftFrame: "Someone left or was removed; `removed_by` is who did it.",
    f.MemberRoleChangedFrame: "A member's role changed (including ownership hand-over and succession).",
    f.ConversationUpdatedFrame: "A group was renamed or made public/private.",
    f.ReadFrame: "A member's read marker moved forward.",
    f.TypingFrame: "A member is typing (the sender's own sockets get it too).",
    f.PresenceFrame: "A person sharing a conversation with you came online or went offline.",
    f.ResyncFrame: "Too much was missed to replay: refetch history after your last seq; live resumes after last_seq.",
    f.AckFrame: "Your message.send was stored (or was a retry of a stored one).",
    f.ErrorFrame: "A frame you sent was refused; the socket stays open.",
    f.PongFrame: "The answer to ping.",
}

_TOKEN = {"type": "string", "description": "An access token from POST /api/login/ or /api/token/refresh/."}
_SINCE = {
    "type": "string",
    "pattern": "^[0-9]+$",
    "description": "Replay the messages after this seq from storage, then go live; without it, live from now.",
}


def _close_codes(*, chat: bool) -> str:
    d = Settings()
    codes = [
        (sockets.CLOSE_BAD_REQUEST, "at connect: not a conversation id, or `since` not a seq (0 to 2^63-1)", chat),
        (
            sockets.CLOSE_UNAUTHENTICATED,
            "token missing, unknown, expired or revoked (at connect or later), or logout",
            True,
        ),
        (sockets.CLOSE_FORBIDDEN, "not a member (at connect), or no longer a member (after member.left)", chat),
        (
            sockets.CLOSE_TOO_SLOW,
            f"send queue (default {d.ws_send_queue} frames) overflowed: reconnect and resume",
            True,
        ),
        (sockets.CLOSE_TOO_MANY, f"the person holds {d.ws_max_sockets_per_user} sockets on this process already", True),
        (sockets.CLOSE_GOING_AWAY, "the server is shutting down: reconnect and resume", True),
    ]
    rows = "\n".join(f"- `{code}`: {why}" for code, why, applies in codes if applies)
    return (
        "The server accepts the socket first, then authenticates, so the close code reaches browsers.\n\n"
        f"Close codes:\n{rows}\n\nThe server also sends protocol pings (by default every {d.ws_ping_interval_s:g} s) "
        f"and closes a peer that does not answer within {d.ws_ping_timeout_s:g} s."
    )


def _message(cls: type[msgspec.Struct], ref: dict[str, Any]) -> dict[str, Any]:
    tag = cls.__struct_config__.tag
    return {
        "name": tag,
        "title": f"{tag} ({'client' if issubclass(cls, f.ClientFrame) else 'server'} frame)",
        "summary": SUMMARIES.get(cls, ""),
        "contentType": "application/json",
        "payload": ref,
    }


def _channel(*, address: str, title: str, description: str, query: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {
        "address": address,
        "title": title,
        "description": description,
        "servers": [{"$ref": "#/servers/local"}],
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        "bindings": {"ws": {"method": "GET", "query": query, "bindingVersion": "0.1.0"}},
    }


def _operations(channel: str, client: list[str], server: list[str]) -> dict[str, Any]:
    def refs(names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names]

    target = {"$ref": f"#/channels/{channel}"}
    return {
        f"{channel}.receive": {
            "action": "receive",
            "channel": target,
            "summary": "Frames the client sends.",
            "messages": refs(client),
        },
        f"{channel}.send": {
            "action": "send",
            "channel": target,
            "summary": "Frames the server sends.",
            "messages": refs(server),
        },
    }


@functools.cache
def asyncapi_document() -> dict[str, Any]:
    client_union = f.client_decoder.type
    client: list[type[msgspec.Struct]] = list(typing.get_args(client_union))
    server: list[type[msgspec.Struct]] = list(f.ServerFrame.__subclasses__())
    (union_schema, *refs), schemas = msgspec.json.schema_components(
        [client_union, *client, *server], ref_template=SCHEMA_REF
    )
    # AsyncAPI's ``discriminator`` is not OpenAPI's mapping object; each member's ``type`` enum
    # tells the frames apart anyway.
    schemas["ClientFrame"] = {"title": "ClientFrame", "anyOf": union_schema["anyOf"]}
    schemas["ServerFrame"] = {"title": "ServerFrame", "anyOf": refs[len(client) :]}
    frames = [*client, *server]
    messages = {cls.__name__: _message(cls, ref) for cls, ref in zip(frames, refs, strict=True)}
    client_names, server_names = [c.__name__ for c in client], [c.__name__ for c in server]
    names = client_names + server_names
    chat_query = {"type": "object", "properties": {"token": _TOKEN, "since": _SINCE}, "required": ["token"]}
    user_query = {"type": "object", "properties": {"token": _TOKEN}, "required": ["token"]}
    chat = _channel(
        address="/ws/chat/{conversation_id}/",
        title="One conversation",
        description="Every event of one conversation; frames you send apply to it.\n\n" + _close_codes(chat=True),
        query=chat_query,
        names=names,
    )
    chat["parameters"] = {"conversation_id": {"description": "A conversation the caller is a member of."}}
    user = _channel(
        address="/ws/",
        title="Every conversation of the user",
        description="Every event of every conversation the user belongs to, including ones joined while "
        "connected; frames you send name their conversation_id.\n\n" + _close_codes(chat=False),
        query=user_query,
        names=names,
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Convocore WebSocket API",
            "version": __version__,
            "description": "The live sockets of Convocore. JSON text frames, each an object tagged by `type`. "
            "The protocol (ordering, resume, presence, typing) is described in docs/realtime.md.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:8000", "protocol": "ws", "description": "`convocore serve`"}},
        "channels": {"chatSocket": chat, "userSocket": user},
        "operations": {
            **_operations("chatSocket", client_names, server_names),
            **_operations("userSocket", client_names, server_names),
        },
        "components": {"schemas": schemas, "messages": messages},
    }


@get("/schema/asyncapi.json", include_in_schema=False, media_type="application/json")
async def asyncapi_schema() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the WebSocket API."""
    return asyncapi_document()
