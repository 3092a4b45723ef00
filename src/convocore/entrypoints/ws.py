"""Live sockets: one per conversation (ws://HOST/ws/chat/{id}/?token=&since=) and one per
user (ws://HOST/ws/?token=) that carries every conversation the user belongs to."""

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.params import FromPath

from convocore.application.accounts import Authenticate, Principal
from convocore.application.messages import PostMessage
from convocore.application.realtime.hub import Hub
from convocore.application.realtime.streams import Stream
from convocore.application.realtime.use_cases import (
    ChargeResume,
    ListMemberships,
    OpenStream,
    SignalTyping,
    TrackPresence,
)
from convocore.domain.errors import DomainError, Invalid, NotFound, RateLimited, Unauthenticated
from convocore.entrypoints.deps import Use
from convocore.entrypoints.errors import NESTED_TOO_DEEPLY, field_in, kind_of
from convocore.entrypoints.sockets import (
    CLOSE_BAD_REQUEST,
    CLOSE_CODES,
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHENTICATED,
    SERVER_SEND,
    Send,
    is_disconnect,
)
from convocore.entrypoints.uvicorn_sockets import UvicornWrites
from convocore.wire import frames as f
from convocore.wire.schemas import ID_PATTERN, SEQ_MAX

log = logging.getLogger("convocore.ws")
_ID = re.compile(ID_PATTERN)
PONG = f.encode(f.PongFrame())

Socket = WebSocket[Any, Any, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Live:
    """What the socket handlers use: the real-time engine and the use cases a socket calls."""

    hub: Hub
    authenticate: Authenticate
    open_stream: OpenStream
    list_memberships: ListMemberships
    post_message: PostMessage
    signal_typing: SignalTyping
    charge_resume: ChargeResume
    track_presence: TrackPresence
    writes: UvicornWrites
    max_frame_bytes: int
    send_queue: int


@websocket("/ws/chat/{conversation_id:str}/")
async def chat_socket(socket: Socket, conversation_id: FromPath[str], live: Use[Live]) -> None:
    since = socket.query_params.get("since")
    principal = await _accept(socket, live)
    if principal is None:
        return
    if not _ID.fullmatch(conversation_id) or len(conversation_id) > 64:
        await socket.close(CLOSE_BAD_REQUEST, "not a conversation id")
        return
    if since is not None and not (since.isascii() and since.isdigit() and int(since) <= SEQ_MAX):
        await socket.close(CLOSE_BAD_REQUEST, f"since must be a seq (a whole number, 0 to {SEQ_MAX})")
        return
    try:
        await live.open_stream.execute(user_id=principal.user_id, conversation_id=conversation_id)
    except NotFound:
        await socket.close(CLOSE_FORBIDDEN, "not a member of this conversation")
        return
    if since is not None:
        live.hub.observer.resumed()
    await _run(socket, live, principal, conversation_id, after=int(since) if since is not None else None)


@websocket("/ws/")
async def user_socket(socket: Socket, live: Use[Live]) -> None:
    principal = await _accept(socket, live)
    if principal is not None:
        await _run(socket, live, principal, None, after=None)


async def _accept(socket: Socket, live: Live) -> Principal | None:
    """Accept first, so a browser sees the close code, then authenticate."""
    await socket.accept()
    try:
        return await live.authenticate.execute(access_token=socket.query_params.get("token", ""))
    except Unauthenticated as error:
        log.info("socket refused: %s", error.detail)
        await socket.close(CLOSE_UNAUTHENTICATED, error.detail)
        return None


async def _run(
    socket: Socket, live: Live, principal: Principal, conversation_id: str | None, *, after: int | None
) -> None:
    # The server's own send, which app.py puts in the scope (the framework's, in an app that is not served).
    server_send = cast("Send", socket.scope.get(SERVER_SEND) or socket.send)
    stream = Stream(
        outlet=live.writes.outlet_for(server_send, socket.close),
        user_id=principal.user_id,
        session_id=principal.session_id,
        expires_at=principal.expires_at,
        queue_size=live.send_queue,
        conversation_id=conversation_id,
        observer=live.hub.observer,
    )
    hub = live.hub
    try:
        await hub.register(stream)  # first, so memberships gained from now on reach this socket
    except RateLimited as error:
        await socket.close(CLOSE_TOO_MANY, error.detail)
        return
    log.info("socket opened: user %s, %s", principal.user_id, conversation_id or "user socket")
    try:
        if conversation_id is not None:
            hub.subscribe(stream, conversation_id, after=after)
        else:
            for cid in await live.list_memberships.execute(user_id=principal.user_id):
                hub.subscribe(stream, cid, after=None)
        await live.track_presence.connected(user_id=principal.user_id)
        await stream.serve(_Reader(socket, stream, live, principal).run(), now=datetime.now(UTC))
    finally:
        hub.unregister(stream)
        why = stream.ending
        said = f"{CLOSE_CODES[why]} {why.value}" if why else "by the client"
        log.info("socket closed: user %s, %s", principal.user_id, said)
        try:
            await live.track_presence.disconnected(user_id=principal.user_id)
        except Exception:  # presence is best effort; the socket is gone either way
            log.warning("presence update failed", exc_info=True)


class _Reader:
    __slots__ = ("live", "principal", "socket", "stream")

    def __init__(self, socket: Socket, stream: Stream, live: Live, principal: Principal) -> None:
        self.socket, self.stream, self.live, self.principal = socket, stream, live, principal

    async def run(self) -> None:
        limit = self.live.max_frame_bytes
        while True:
            try:
                message = await self.socket.receive()
            except Exception as error:
                if is_disconnect(error):
                    return
                raise
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not isinstance(text, str):
                self.error("bad-frame", "binary frames are not supported; send JSON text frames")
            elif len(text) > limit // 4 and len(text.encode()) > limit:
                self.error("frame-too-large", f"frames are at most {limit} bytes")
            else:
                await self.handle(text)
            del message, text  # not held while the socket waits for its next frame

    async def handle(self, text: str) -> None:
        try:
            frame = f.client_decoder.decode(text)
        except msgspec.ValidationError as error:
            try:  # msgspec may judge the shape before finding the text is not JSON at all
                json.loads(text)
            except json.JSONDecodeError as broken:
                self.error("bad-frame", f"not a JSON frame: {broken}")
                return
            except RecursionError:
                pass  # deep, but JSON: the shape is what is wrong
            self.error("validation-error", str(error), field=field_in(str(error)))
            return
        except msgspec.DecodeError as error:
            self.error("bad-frame", f"not a JSON frame: {error}")
            return
        except RecursionError:  # msgspec, skipping deeply nested values while it looks for the tag
            self.error("bad-frame", NESTED_TOO_DEEPLY)
            return
        client_id = frame.client_id if isinstance(frame, f.MessageSend) else None
        try:
            await self.dispatch(frame)
        except DomainError as error:
            retry_after = getattr(error, "retry_after", None)
            self.error(
                kind_of(error).slug, error.detail, field=error.field, client_id=client_id, retry_after=retry_after
            )
        except Exception:  # keep the socket: one failed frame must not end the session
            log.exception("handling a %s frame failed", type(frame).__name__)
            self.error("internal-error", "the frame could not be handled", client_id=client_id)

    async def dispatch(self, frame: f.MessageSend | f.Ping | f.Typing | f.Resume) -> None:
        if isinstance(frame, f.Ping):
            self.stream.offer(PONG)
        elif isinstance(frame, f.MessageSend):
            posted = await self.live.post_message.execute(
                user_id=self.principal.user_id,
                conversation_id=self.target(frame.conversation_id),
                body=frame.body,
                client_id=frame.client_id,
                reply_to=frame.reply_to,
            )
            m = posted.message
            ack = f.AckFrame(client_id=frame.client_id, id=m.id, seq=m.seq, conversation_id=m.conversation_id)
            self.stream.offer(f.encode(ack))
        elif isinstance(frame, f.Typing):
            cid = self.target(frame.conversation_id)
            if cid not in self.stream.subscriptions:
                raise NotFound("no such conversation", field="conversation_id")
            await self.live.signal_typing.execute(user_id=self.principal.user_id, conversation_id=cid)
        else:
            await self.live.charge_resume.execute(user_id=self.principal.user_id)
            unknown = self.live.hub.resume(self.stream, frame.since)
            if unknown:
                raise NotFound(f"not following {', '.join(unknown)}", field="since")

    def target(self, named: str | None) -> str:
        """The conversation a frame is for: the socket's own, or the one it names."""
        own = self.stream.conversation_id
        if own is not None:
            if named not in (None, own):
                raise Invalid("this socket is for another conversation", field="conversation_id")
            return own
        if named is None:
            raise Invalid("name the conversation_id on the user socket", field="conversation_id")
        return named

    def error(
        self,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        client_id: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        frame = f.ErrorFrame(code=code, detail=detail, field=field, client_id=client_id, retry_after=retry_after)
        self.stream.offer(f.encode(frame))
