"""An async client for Convocore's REST API and user socket, typed with the server's own wire
Structs (`convocore.wire.schemas` and `convocore.wire.frames`)::

    async with ConvocoreClient("http://127.0.0.1:8000") as c:
        await c.register("alice", "correct horse")
        await c.login("alice", "correct horse")
        conv = await c.start_group("Launch", members=[bob_id])
        await c.connect()  # the socket is up: every message from now on will be delivered
        await c.send(conv.id, "hi", client_id="c-1")
        async for event in c.events():
            ...

The socket reconnects by itself (with backoff) and resumes from the last seq it delivered per
conversation; ``resync`` is filled over REST; an expired access token is refreshed. Frames
come out of ``events()`` in order, with no repeated or missing ``message.created``; replies to
your own frames (``pong``) and ``resync`` are handled inside.
"""

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from convocore.client.live import ConnectionLost, Frame, LiveStream
from convocore.client.rest import ApiError, Problem, RestClient, SessionEnded
from convocore.wire import frames, schemas

__all__ = [
    "ApiError",
    "ConnectionLost",
    "ConvocoreClient",
    "Frame",
    "Problem",
    "SessionEnded",
    "frames",
    "schemas",
]


class ConvocoreClient(RestClient):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30,
        max_retries: int = 30,
        backoff_max_s: float = 5.0,
        tokens: schemas.TokensOut | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, tokens=tokens)
        self.live = LiveStream(self, max_retries=max_retries, backoff_max_s=backoff_max_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the user socket if it is not open, and wait until it is subscribed."""
        await self.live.start()

    def events(self) -> AsyncIterator[Frame]:
        """Server frames as they come (one reader at a time); connects first if needed.
        Raises `SessionEnded` (logged out) or `ConnectionLost` (server gone) when it stops."""
        return self.live.events()

    async def typing(self, conversation_id: str) -> None:
        """Tell the conversation you are typing (dropped while disconnected)."""
        await self.live.typing(conversation_id)

    async def aclose(self) -> None:
        await self.live.close()
        await super().aclose()
