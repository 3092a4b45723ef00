"""Cross-process live delivery through Redis.

A process subscribes only to what it has sockets for: a channel per interest it follows (a
conversation it hosts sockets of, a user with a socket here, and presence). An event is encoded
once (``codec``) and published once to each of its interests' channels. A single writer task
pipelines the PUBLISHes, so this process's events keep their order. Each process hands its own
events to its own sockets straight from memory and skips them when they come back. When Redis
is away, writes go on (publishes are dropped and counted); on reconnect every channel is
subscribed again and listeners are told, so sockets catch up from storage.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable

from redis.asyncio import Redis

from convocore.adapters.redis import RETRYABLE as _RETRYABLE
from convocore.adapters.redis import codec
from convocore.application.realtime.interests import PRESENCE, interests_of
from convocore.domain.errors import Unavailable
from convocore.domain.events import Event

log = logging.getLogger("convocore.redis")


class RedisBroadcaster:
    def __init__(self, *, url: str, prefix: str = "convocore", outbox_size: int = 100_000) -> None:
        self._url, self._prefix = url, prefix
        self.origin = uuid.uuid4().hex[:16].encode()
        self._serial = 0
        self._listeners: list[Callable[[Event], None]] = []
        self._resumed: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(outbox_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Redis | None = None
        self._pubsub: object | None = None
        self._wanted: set[str] = {self._channel(PRESENCE)}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._seen: deque[bytes] = deque(maxlen=4096)  # ids of events sent to two channels
        self.published = 0
        self.dropped = 0
        self.subscribed = asyncio.Event()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Every event: this process's straight away, as published; others' as they arrive."""
        self._listeners.append(listener)

    def on_gap(self, callback: Callable[[], None]) -> None:
        """Called after the subscription came back from an outage (events may be missing)."""
        self._resumed.append(callback)

    async def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        interests = interests_of(event)
        self._serial += 1
        serial = str(self._serial).encode() if len(interests) > 1 else b"-"
        data = self.origin + b" " + serial + b" " + codec.encode(event)
        for interest in interests:
            try:
                self._outbox.put_nowait((self._channel(interest), data))
            except asyncio.QueueFull:
                self.dropped += 1  # other processes' sockets catch up from storage on the next gap

    def follow(self, interest: str) -> asyncio.Future[None]:
        """Start hearing of ``interest``; the future is done once Redis confirms the
        subscription (or at once while Redis is away: sockets catch up when it is back)."""
        channel = self._channel(interest)
        self._wanted.add(channel)
        future = self._confirmed.get(channel)
        if future is None:
            future = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            self._send_subscription("subscribe", channel, future)
        return future

    def unfollow(self, interest: str) -> None:
        channel = self._channel(interest)
        self._wanted.discard(channel)
        self._confirmed.pop(channel, None)
        self._send_subscription("unsubscribe", channel, None)

    async def start(self) -> None:
        self._redis = Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=None)
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._redis is not None:
            await self._redis.aclose()

    async def ping(self) -> None:
        try:
            if self._redis is None:
                raise ConnectionError("not started")
            await self._redis.ping()
        except _RETRYABLE as error:
            raise Unavailable(f"redis does not answer ({type(error).__name__})") from error

    def _channel(self, interest: str) -> str:
        return f"{self._prefix}:{interest}"

    def _send_subscription(self, command: str, channel: str, future: asyncio.Future[None] | None) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.subscribed.is_set():
            if future is not None and not future.done():
                future.set_result(None)  # subscribed on (re)connect with everything wanted
            return

        async def send() -> None:
            try:
                await getattr(pubsub, command)(channel)
            except _RETRYABLE as error:
                log.warning("redis %s %s failed: %s", command, channel, error)
                if future is not None and not future.done():
                    future.set_result(None)

        task = asyncio.ensure_future(send())
        task.add_done_callback(lambda _: None)

    async def _write(self) -> None:
        assert self._redis is not None
        pause = 0.05
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 512:
                batch.append(self._outbox.get_nowait())
            try:
                pipe = self._redis.pipeline(transaction=False)
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
                self.published += len(batch)
                pause = 0.05
            except _RETRYABLE as error:
                self.dropped += len(batch)
                log.warning("redis publish failed (%d events dropped): %s", len(batch), error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _listen(self) -> None:
        assert self._redis is not None
        pause, first = 0.05, True
        while True:
            pubsub = self._redis.pubsub()
            try:
                wanted = sorted(self._wanted)
                for i in range(0, len(wanted), 1000):
                    await pubsub.subscribe(*wanted[i : i + 1000])
                self._pubsub = pubsub
                self.subscribed.set()
                if not first:
                    log.info("redis subscription restored (%d channels)", len(wanted))
                    for callback in self._resumed:
                        callback()
                first, pause = False, 0.05
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind == "message":
                        self._receive(message["data"])
                    elif kind == "subscribe":
                        self._confirm(message["channel"])
            except _RETRYABLE as error:
                self.subscribed.clear()
                self._pubsub = None
                log.warning("redis subscription lost: %s; retrying in %.2fs", error, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            finally:
                with contextlib.suppress(*_RETRYABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8

    def _confirm(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        future = self._confirmed.get(name)
        if future is not None and not future.done():
            future.set_result(None)

    def _receive(self, data: bytes) -> None:
        origin, _, rest = data.partition(b" ")
        serial, _, payload = rest.partition(b" ")
        if origin == self.origin:
            return
        if serial != b"-":  # sent to two channels: a process hearing both acts once
            key = origin + b" " + serial
            if key in self._seen:
                return
            self._seen.append(key)
        try:
            event = codec.decode(payload)
        except ValueError as error:  # another version's, or damaged: the next gap is filled from storage
            log.warning("an event from Redis was skipped: %s", error)
            return
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one bad event must not end the subscription
                log.exception("remote event listener failed")
