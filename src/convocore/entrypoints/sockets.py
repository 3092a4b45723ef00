"""A live socket's sending side, the real-time engine's ``Outlet``: data frames through the ASGI
server's own ``send``, the close through the framework, which keeps the socket's state. (Where
the accelerator may, ``uvicorn_sockets.DirectOutlet`` writes frames to uvicorn's transport.)"""

from collections.abc import Awaitable, Callable, Generator
from typing import Any, cast

from convocore.application.ports import Ending

Send = Callable[[dict[str, Any]], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]

SERVER_SEND = "convocore.server_send"  # the ASGI server's own send, in a socket's scope (app.py)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY = 4429
CLOSE_GOING_AWAY = 1001
CLOSE_CODES = {
    Ending.EXPIRED: CLOSE_UNAUTHENTICATED,
    Ending.LOGGED_OUT: CLOSE_UNAUTHENTICATED,
    Ending.NOT_A_MEMBER: CLOSE_FORBIDDEN,
    Ending.TOO_SLOW: CLOSE_TOO_SLOW,
    Ending.GOING_AWAY: CLOSE_GOING_AWAY,
}
_DISCONNECTS = frozenset({"WebSocketDisconnect", "ClientDisconnected"})


def is_disconnect(error: BaseException) -> bool:
    """The client went away (the framework's and the server's words for it, or the OS's)."""
    return type(error).__name__ in _DISCONNECTS or isinstance(error, OSError)


class AsgiOutlet:
    __slots__ = ("_close", "_send")

    def __init__(self, *, send: Send, close: Close) -> None:
        self._send, self._close = send, close

    def send(self, frame: str) -> Awaitable[None] | None:
        try:
            return _step(self._send({"type": "websocket.send", "text": frame}))
        except Exception as error:
            if is_disconnect(error):
                return None  # the reader hears of it too, and ends the stream
            raise

    async def close(self, ending: Ending) -> None:
        await self._close(CLOSE_CODES[ending], ending.value)


def _step(awaitable: Awaitable[None]) -> "_Suspended | None":
    """Run ``awaitable`` until it finishes (None) or first waits (the rest of it, to finish in
    a task): a writable socket's ``send`` never waits, so this is a plain call, with no task."""
    steps = cast("Generator[Any, None, None]", awaitable.__await__())
    try:
        waiting_on = steps.send(None)
    except StopIteration:
        return None
    return _Suspended(steps, waiting_on)


class _Suspended:
    """The rest of a coroutine that ``_step`` started: awaiting this runs it to the end, as if
    it had been awaited from the start (the task waits on what it was waiting on)."""

    __slots__ = ("steps", "waiting_on")

    def __init__(self, steps: Generator[Any, None, None], waiting_on: Any) -> None:
        self.steps, self.waiting_on = steps, waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        waiting_on = self.waiting_on
        while True:
            try:
                yield waiting_on
            except BaseException as error:  # cancelled while waiting: pass it on
                try:
                    waiting_on = self.steps.throw(error)
                except StopIteration:
                    return
                continue
            try:
                waiting_on = self.steps.send(None)
            except StopIteration:
                return
