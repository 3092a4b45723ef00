"""The per-conversation chat socket: ws://HOST/ws/chat/{conversation_id}/?token=ACCESS."""

import logging
from typing import Any, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.params import FromPath

from convocore.application.accounts import Principal
from convocore.domain.errors import DomainError, NotFound, Unauthenticated
from convocore.entrypoints import frames as f
from convocore.entrypoints.container import Container
from convocore.entrypoints.errors import field_in, kind_of
from convocore.entrypoints.hub import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, Connection, Hub, Send
from convocore.entrypoints.settings import Settings

log = logging.getLogger("convocore.ws")
PONG = f.encode(f.PongFrame())


@websocket("/ws/chat/{conversation_id:str}/")
async def chat_socket(socket: WebSocket[Any, Any, Any], conversation_id: FromPath[str]) -> None:
    container: Container = socket.app.state.container
    hub: Hub = socket.app.state.hub
    settings: Settings = socket.app.state.settings
    await socket.accept()  # accept first, so a browser sees the close code
    try:
        principal = await container.authenticate().execute(access_token=socket.query_params.get("token", ""))
    except Unauthenticated as error:
        await socket.close(CLOSE_UNAUTHENTICATED, error.detail)
        return
    try:
        await container.get_conversation().execute(user_id=principal.user_id, conversation_id=conversation_id)
    except NotFound:
        await socket.close(CLOSE_FORBIDDEN, "not a member of this conversation")
        return
    connection = Connection(
        send=cast("Send", socket.send), user_id=principal.user_id, queue_size=settings.ws_send_queue
    )
    hub.attach(conversation_id, connection)
    try:
        reader = _ChatReader(socket, connection, container, principal, conversation_id, settings)
        await connection.serve(reader.run())
    finally:
        hub.detach(conversation_id, connection)


class _ChatReader:
    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        connection: Connection,
        container: Container,
        principal: Principal,
        conversation_id: str,
        settings: Settings,
    ) -> None:
        self.socket, self.connection, self.container = socket, connection, container
        self.principal, self.conversation_id, self.settings = principal, conversation_id, settings

    async def run(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not isinstance(text, str):
                self.error("bad-frame", "binary frames are not supported; send JSON text frames")
            elif (
                len(text) > self.settings.ws_max_frame_bytes // 4
                and len(text.encode()) > self.settings.ws_max_frame_bytes
            ):
                self.error("frame-too-large", f"frames are at most {self.settings.ws_max_frame_bytes} bytes")
            else:
                await self.handle(text)

    async def handle(self, text: str) -> None:
        try:
            frame = f.client_decoder.decode(text)
        except msgspec.ValidationError as error:
            self.error("validation-error", str(error), field=field_in(str(error)))
            return
        except msgspec.DecodeError as error:
            self.error("bad-frame", f"not a JSON frame: {error}")
            return
        if isinstance(frame, f.Ping):
            self.connection.offer(PONG)
            return
        await self.send(frame)

    async def send(self, frame: f.MessageSend) -> None:
        if frame.conversation_id not in (None, self.conversation_id):
            self.error("validation-error", "this socket is for another conversation", field="conversation_id")
            return
        try:
            posted = await self.container.post_message().execute(
                user_id=self.principal.user_id,
                conversation_id=self.conversation_id,
                body=frame.body,
                client_id=frame.client_id,
                reply_to=frame.reply_to,
            )
        except DomainError as error:
            self.error(kind_of(error).slug, error.detail, field=error.field, client_id=frame.client_id)
            return
        except Exception:  # keep the socket: one failed send must not end the session
            log.exception("message.send failed")
            self.error("internal-error", "the message could not be sent", client_id=frame.client_id)
            return
        m = posted.message
        ack = f.AckFrame(client_id=frame.client_id, id=m.id, seq=m.seq, conversation_id=m.conversation_id)
        self.connection.offer(f.encode(ack))

    def error(self, code: str, detail: str, *, field: str | None = None, client_id: str | None = None) -> None:
        frame = f.ErrorFrame(code=code, detail=detail, field=field, client_id=client_id)
        self.connection.offer(f.encode(frame))
