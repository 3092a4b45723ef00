"""The live half of the client: the user socket, kept open across drops.

Before each connection the inbox is read, and right after it a ``resume`` frame names every
conversation with the last seq this client holds (for a conversation first seen in that
inbox read: its last seq on the first connection, the read marker on later ones, which is
where a membership gained while away starts). The server replays what follows and then
goes live, so nothing is lost at the seam; a repeat is dropped here by seq. A ``resync``, or
a gap, is filled over REST. A 4401 close refreshes the token pair and reconnects.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from convocore.client.rest import ApiError, RestClient, SessionEnded
from convocore.wire import frames as f

log = logging.getLogger("convocore.client")

Frame = (
    f.MessageCreatedFrame
    | f.MessageUpdatedFrame
    | f.MessageDeletedFrame
    | f.MemberJoinedFrame
    | f.MemberLeftFrame
    | f.MemberRoleChangedFrame
    | f.ConversationUpdatedFrame
    | f.ReadFrame
    | f.TypingFrame
    | f.PresenceFrame
    | f.ResyncFrame
    | f.AckFrame
    | f.ErrorFrame
    | f.PongFrame
)
_decoder = msgspec.json.Decoder(Frame)
_encoder = msgspec.json.Encoder()
CLOSE_UNAUTHENTICATED = 4401
RESUME_CHUNK = 200  # conversations per resume frame: well under the server's 16 KiB frame limit


class ConnectionLost(Exception):
    """The server could not be reached for ``max_retries`` attempts in a row."""


def _retryable(error: Exception) -> bool:
    if isinstance(error, ApiError):
        return error.status >= 500 or error.status == 429
    return isinstance(error, OSError | TimeoutError | InvalidHandshake | ConnectionClosed | httpx.TransportError)


def _chunks(since: dict[str, int]) -> Iterator[dict[str, int]]:
    items = list(since.items())
    for start in range(0, len(items), RESUME_CHUNK):
        yield dict(items[start : start + RESUME_CHUNK])


class LiveStream:
    def __init__(self, rest: RestClient, *, max_retries: int, backoff_max_s: float, buffer: int = 10_000) -> None:
        self.rest, self.max_retries, self.backoff_max_s = rest, max_retries, backoff_max_s
        self.ws_url = "ws" + rest.base_url.removeprefix("http")  # http -> ws, https -> wss
        self.last_seq: dict[str, int] = {}  # per conversation: the last message delivered
        self.socket: ClientConnection | None = None
        self.connections = 0  # how many times the socket came up, reconnections included
        self._frames: asyncio.Queue[Frame | Exception] = asyncio.Queue(buffer)
        self._online = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped: Exception | None = None  # why the stream gave up, once it has
        self._me = ""

    async def start(self) -> None:
        """Connect (once) and return when the socket is up and subscribed."""
        if self._task is None:
            self._task = asyncio.create_task(self._main())
        online = asyncio.ensure_future(self._online.wait())
        await asyncio.wait({online, self._task}, return_when=asyncio.FIRST_COMPLETED)
        online.cancel()
        if self._task.done():
            raise self._stopped or ConnectionLost("the live stream has stopped")

    async def events(self) -> AsyncIterator[Frame]:
        await self.start()
        while True:
            item = await self._frames.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def typing(self, conversation_id: str) -> None:
        socket = self.socket
        if socket is not None:  # typing notices are ephemeral: while offline there is nothing to send
            with contextlib.suppress(ConnectionClosed):
                await socket.send(_encoder.encode(f.Typing(conversation_id=conversation_id)).decode())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _main(self) -> None:
        try:
            await self._run()
        except Exception as error:  # handed to the reader of events(), who decides
            self._stopped = error
            await self._frames.put(error)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._connection()
            except Exception as error:
                if not _retryable(error):
                    raise
                log.info("live connection failed: %r", error)
            if self._online.is_set():  # it had worked: reconnect at once
                self._online.clear()
                failures = 0
                continue
            failures += 1
            if failures > self.max_retries:
                raise ConnectionLost(f"no connection after {self.max_retries} attempts")
            await asyncio.sleep(min(self.backoff_max_s, 0.05 * 2**failures) * random.uniform(0.5, 1.0))

    async def _connection(self) -> None:
        since = await self._baseline()
        token, self._me = self.rest.access_token, self.rest.user.id
        async with connect(f"{self.ws_url}/ws/?token={quote(token)}", open_timeout=10) as socket:
            self.socket = socket
            try:
                for chunk in _chunks(since):
                    await socket.send(_encoder.encode(f.Resume(since=chunk)).decode())
                await socket.send(_encoder.encode(f.Ping()).decode())  # its pong: subscribed
                async for text in socket:
                    await self._handle(text)
            except ConnectionClosed:
                pass
            finally:
                self.socket = None
        if socket.close_code == CLOSE_UNAUTHENTICATED:
            if socket.close_reason == "logged out":
                raise SessionEnded("logged out")
            await self.rest.refresh(stale=token)  # expired or refused: a fresh pair, then reconnect

    async def _baseline(self) -> dict[str, int]:
        first = self.connections == 0
        current: dict[str, int] = {}
        async for item in self.rest.inbox_all():
            known = self.last_seq.get(item.id)
            current[item.id] = known if known is not None else item.last_seq if first else item.last_read_seq
        self.last_seq = current  # conversations left while away drop out here
        return dict(current)

    async def _handle(self, text: str | bytes) -> None:
        try:
            frame = _decoder.decode(text)
        except msgspec.ValidationError:
            log.debug("skipping a frame this client does not know: %.200r", text)
            return
        me = self._me
        match frame:
            case f.PongFrame():
                self.connections += 1
                self._online.set()
                return
            case f.ResyncFrame(conversation_id=cid, last_seq=upto):
                await self._fill(cid, upto)
                return
            case f.MessageCreatedFrame(conversation_id=cid, message=message):
                last = self.last_seq.get(cid)
                if last is not None and message.seq <= last:
                    return  # already delivered
                if last is not None and message.seq > last + 1:
                    await self._fill(cid, message.seq - 1)  # the server prevents gaps; survive one anyway
                self.last_seq[cid] = message.seq
            case f.MemberJoinedFrame(conversation_id=cid, member=member) if member.user_id == me:
                self.last_seq.setdefault(cid, member.last_read_seq)
            case f.MemberLeftFrame(conversation_id=cid, user_id=uid) if uid == me:
                self.last_seq.pop(cid, None)
        await self._frames.put(frame)

    async def _fill(self, conversation_id: str, upto: int) -> None:
        """Deliver the messages after the last one seen up to ``upto``, read over REST."""
        after = self.last_seq.get(conversation_id, upto)
        while after < upto:
            try:
                page = await self.rest.history(conversation_id, after=after, before=upto + 1, limit=200)
            except ApiError as error:
                if error.status != 404:
                    raise
                self.last_seq.pop(conversation_id, None)  # no longer a member
                return
            for message in page.items:
                await self._frames.put(f.MessageCreatedFrame(conversation_id=conversation_id, message=message))
                after = self.last_seq[conversation_id] = message.seq
            if not page.has_more:
                break
        self.last_seq[conversation_id] = max(after, upto)
