"""Cross-process live delivery and presence through Redis.

One shared channel carries every event, one PUBLISH per event, pipelined by a single writer
task so this process's events keep their order. Each process hands its own events to its own
sockets straight from memory and skips them when they come back from Redis. When Redis is
away, writes go on (publishes are dropped and counted); on reconnect, listeners are told so
that sockets catch up from storage.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from convocore.domain.events import Event

log = logging.getLogger("convocore.redis")

_RETRYABLE = (RedisError, OSError, asyncio.TimeoutError)


class RedisBroadcaster:
    def __init__(
        self,
        *,
        url: str,
        encode: Callable[[Event], bytes],
        channel: str = "convocore:events",
        outbox_size: int = 100_000,
    ) -> None:
        self._url, self._encode, self._channel = url, encode, channel
        self.origin = uuid.uuid4().hex[:16].encode()
        self._local: list[Callable[[Event], None]] = []
        self._remote: list[Callable[[bytes], None]] = []
        self._resumed: list[Callable[[], None]] = []
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(outbox_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Redis | None = None
        self.published = 0
        self.dropped = 0
        self.subscribed = asyncio.Event()

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Events published by this process, as objects."""
        self._local.append(listener)

    def add_remote_listener(self, listener: Callable[[bytes], None]) -> None:
        """Events published by other processes, as the bytes ``encode`` made of them."""
        self._remote.append(listener)

    def on_resubscribed(self, callback: Callable[[], None]) -> None:
        """Called after the subscription came back from an outage (events may be missing)."""
        self._resumed.append(callback)

    async def publish(self, event: Event) -> None:
        for listener in self._local:
            listener(event)
        try:
            self._outbox.put_nowait(self.origin + b" " + self._encode(event))
        except asyncio.QueueFull:
            self.dropped += 1  # other processes' sockets catch up from storage on the next gap

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

    async def _write(self) -> None:
        assert self._redis is not None
        pause = 0.05
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 512:
                batch.append(self._outbox.get_nowait())
            try:
                pipe = self._redis.pipeline(transaction=False)
                for data in batch:
                    pipe.publish(self._channel, data)
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
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed.set()
                if not first:
                    log.info("redis subscription restored")
                    for callback in self._resumed:
                        callback()
                first, pause = False, 0.05
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._receive(message["data"])
            except _RETRYABLE as error:
                self.subscribed.clear()
                log.warning("redis subscription lost: %s; retrying in %.2fs", error, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            finally:
                with contextlib.suppress(*_RETRYABLE):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _receive(self, data: bytes) -> None:
        origin, _, payload = data.partition(b" ")
        if origin == self.origin:
            return
        for listener in self._remote:
            try:
                listener(payload)
            except Exception:  # one bad event must not end the subscription
                log.exception("remote event listener failed")


class RedisPresenceStore:
    """Presence across processes: a hash per user of process -> expiry, refreshed by each
    process for its own users; a sorted set of expiries lets any process reap a dead one's."""

    def __init__(self, *, url: str, ttl_s: int = 30, prefix: str = "convocore:presence") -> None:
        self._url, self._ttl_s, self._prefix = url, ttl_s, prefix
        self._process = uuid.uuid4().hex[:16]
        self._local: dict[str, int] = {}
        self._redis: Redis | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._redis = Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=5, decode_responses=True)
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            with contextlib.suppress(*_RETRYABLE):
                await self._mark(list(self._local), alive=False)
            await self._redis.aclose()

    async def connected(self, user_id: str) -> bool:
        self._local[user_id] = self._local.get(user_id, 0) + 1
        if self._local[user_id] > 1:
            return False
        try:
            others = await self._live_processes(user_id)
            await self._mark([user_id], alive=True)
        except _RETRYABLE as error:
            log.warning("presence unavailable: %s", error)
            return True
        return not others

    async def disconnected(self, user_id: str) -> bool:
        left = self._local.get(user_id, 0) - 1
        if left > 0:
            self._local[user_id] = left
            return False
        self._local.pop(user_id, None)
        try:
            await self._mark([user_id], alive=False)
            return not await self._live_processes(user_id)
        except _RETRYABLE as error:
            log.warning("presence unavailable: %s", error)
            return True

    async def expired(self) -> list[str]:
        redis = self._client()
        try:
            due = await redis.zrangebyscore(f"{self._prefix}:expiry", "-inf", time.time())
            gone: list[str] = []
            for entry in map(str, due):
                if not await redis.zrem(f"{self._prefix}:expiry", entry):
                    continue  # another process claimed it
                user_id, _, process = entry.rpartition("|")
                await redis.hdel(f"{self._prefix}:{user_id}", process)
                if not await self._live_processes(user_id):
                    gone.append(user_id)
            return gone
        except _RETRYABLE as error:
            log.warning("presence reaping failed: %s", error)
            return []

    async def online(self, user_ids: Sequence[str]) -> set[str]:
        try:
            return {uid for uid in user_ids if await self._live_processes(uid)}
        except _RETRYABLE:
            return {uid for uid in user_ids if uid in self._local}

    async def _live_processes(self, user_id: str) -> list[str]:
        entries = await self._client().hgetall(f"{self._prefix}:{user_id}")
        now = time.time()
        return [str(p) for p, expiry in entries.items() if float(expiry) > now and p != self._process]

    async def _mark(self, user_ids: list[str], *, alive: bool) -> None:
        if not user_ids:
            return
        pipe = self._client().pipeline(transaction=False)
        expiry = time.time() + self._ttl_s
        for user_id in user_ids:
            entry = f"{user_id}|{self._process}"
            if alive:
                pipe.hset(f"{self._prefix}:{user_id}", self._process, str(expiry))
                pipe.zadd(f"{self._prefix}:expiry", {entry: expiry})
            else:
                pipe.hdel(f"{self._prefix}:{user_id}", self._process)
                pipe.zrem(f"{self._prefix}:expiry", entry)
        await pipe.execute()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            with contextlib.suppress(*_RETRYABLE):
                await self._mark([uid for uid, n in self._local.items() if n > 0], alive=True)

    def _client(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("start() the presence store first")
        return self._redis
