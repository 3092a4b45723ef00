"""Live sockets: one per conversation (ws://HOST/ws/chat/{id}/?token=&since=) and one per
user (ws://HOST/ws/?token=) that carries every conversation the user belongs to."""

import json
import logging
from typing import Any, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.params import FromPath

from convocore.application.accounts import Principal
from convocore.domain.errors import DomainError, Invalid, NotFound, Unauthenticated
from convocore.entrypoints import frames as f
from convocore.entrypoints.container import Container
from convocore.entrypoints.direct import DirectWriter
from convocore.entrypoints.errors import NESTED_TOO_DEEPLY, field_in, kind_of
from convocore.entrypoints.hub import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    SERVER_SEND,
    Connection,
    Hub,
    Send,
)
from convocore.entrypoints.settings import Settings

log = logging.getLogger("convocore.ws")
PONG = f.encode(f.PongFrame())

Socket = WebSocket[Any, Any, Any]


@websocket("/ws/chat/{conversation_id:str}/")
async def chat_socket(socket: Socket, conversation_id: FromPath[str]) -> None:
    since = socket.query_params.get("since")
    principal = await _accept(socket)
    if principal is None:
        return
    if since is not None and not (since.isascii() and since.isdigit()):
        await socket.close(CLOSE_BAD_REQUEST, "since must be a seq (a whole number)")
        return
    container: Container = socket.app.state.container
    try:
        await container.open_stream().execute(user_id=principal.user_id, conversation_id=conversation_id)
    except NotFound:
        await socket.close(CLOSE_FORBIDDEN, "not a member of this conversation")
        return
    if since is not None:
        socket.app.state.hub.observer.resumed()
    await _run(socket, principal, conversation_id, after=int(since) if since is not None else None)


@websocket("/ws/")
async def user_socket(socket: Socket) -> None:
    principal = await _accept(socket)
    if principal is not None:
        await _run(socket, principal, None, after=None)


async def _accept(socket: Socket) -> Principal | None:
    """Accept first, so a browser sees the close code, then authenticate."""
    await socket.accept()
    container: Container = socket.app.state.container
    try:
        return await container.authenticate().execute(access_token=socket.query_params.get("token", ""))
    except Unauthenticated as error:
        log.info("socket refused: %s", error.detail)
        await socket.close(CLOSE_UNAUTHENTICATED, error.detail)
        return None


async def _run(socket: Socket, principal: Principal, conversation_id: str | None, *, after: int | None) -> None:
    container: Container = socket.app.state.container
    hub: Hub = socket.app.state.hub
    settings: Settings = socket.app.state.settings
    server_send = socket.scope.get(SERVER_SEND)
    connection = Connection(
        send=cast("Send", socket.send),
        user_id=principal.user_id,
        session_id=principal.session_id,
        expires_at=principal.expires_at,
        queue_size=settings.ws_send_queue,
        conversation_id=conversation_id,
        observer=hub.observer,
        write=cast("Send | None", server_send),
        direct=DirectWriter.of(server_send),
    )
    log.info("socket opened: user %s, %s", principal.user_id, conversation_id or "user socket")
    await hub.register(connection)  # first, so memberships gained from now on reach this socket
    try:
        if conversation_id is not None:
            hub.subscribe(connection, conversation_id, after=after)
        else:
            for cid in await container.list_memberships().execute(user_id=principal.user_id):
                hub.subscribe(connection, cid, after=None)
        await container.track_presence().connected(user_id=principal.user_id)
        reader = _Reader(socket, connection, container, hub, principal, settings)
        await connection.serve(reader.run())
    finally:
        hub.unregister(connection)
        why = connection.close_reason
        log.info("socket closed: user %s, %s", principal.user_id, f"{why[0]} {why[1]}" if why else "by the client")
        try:
            await container.track_presence().disconnected(user_id=principal.user_id)
        except Exception:  # presence is best effort; the socket is gone either way
            log.warning("presence update failed", exc_info=True)


class _Reader:
    __slots__ = ("connection", "container", "hub", "principal", "settings", "socket")

    def __init__(
        self,
        socket: Socket,
        connection: Connection,
        container: Container,
        hub: Hub,
        principal: Principal,
        settings: Settings,
    ) -> None:
        self.socket, self.connection, self.container, self.hub = socket, connection, container, hub
        self.principal, self.settings = principal, settings

    async def run(self) -> None:
        limit = self.settings.ws_max_frame_bytes
        while True:
            message = await self.socket.receive()
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
            try:  # msgspec (0.23) may judge the shape before finding the text is not JSON at all
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
            self.connection.offer(PONG)
        elif isinstance(frame, f.MessageSend):
            cid = self.target(frame.conversation_id)
            posted = await self.container.post_message().execute(
                user_id=self.principal.user_id,
                conversation_id=cid,
                body=frame.body,
                client_id=frame.client_id,
                reply_to=frame.reply_to,
            )
            m = posted.message
            ack = f.AckFrame(client_id=frame.client_id, id=m.id, seq=m.seq, conversation_id=m.conversation_id)
            self.connection.offer(f.encode(ack))
        elif isinstance(frame, f.Typing):
            cid = self.target(frame.conversation_id)
            if cid not in self.connection.subscriptions:
                raise NotFound("no such conversation", field="conversation_id")
            await self.container.signal_typing().execute(user_id=self.principal.user_id, conversation_id=cid)
        else:
            self.resume(frame)

    def resume(self, frame: f.Resume) -> None:
        unknown = [cid for cid in frame.since if cid not in self.connection.subscriptions]
        for cid, seq in frame.since.items():
            if cid in self.connection.subscriptions:
                self.hub.subscribe(self.connection, cid, after=seq)
                self.hub.observer.resumed()
        if unknown:
            raise NotFound(f"not following {', '.join(sorted(unknown))}", field="since")

    def target(self, named: str | None) -> str:
        """The conversation a frame is for: the socket's own, or the one it names."""
        own = self.connection.conversation_id
        if own is not None:
            if named not in (None, own):
                raise _invalid("this socket is for another conversation")
            return own
        if named is None:
            raise _invalid("name the conversation_id on the user socket")
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
        self.connection.offer(f.encode(frame))


def _invalid(detail: str) -> DomainError:
    return Invalid(detail, field="conversation_id")
