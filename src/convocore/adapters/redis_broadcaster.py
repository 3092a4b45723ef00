"""Cross-process live delivery and presence through Redis.

A process subscribes only to what it has sockets for: a channel per conversation it hosts
sockets of, a channel per user with a socket here, and one presence channel. An event is
encoded once and published once to its channel (membership changes also to the member's
user channel, so a user socket elsewhere learns of a new conversation). A single writer task
pipelines the PUBLISHes, so this process's events keep their order. Each process hands its own
events to its own sockets straight from memory and skips them when they come back. When Redis
is away, writes go on (publishes are dropped and counted); on reconnect every channel is
subscribed again and listeners are told, so sockets catch up from storage.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from convocore.domain import events as ev
from convocore.domain.errors import Unavailable
from convocore.domain.events import Event

log = logging.getLogger("convocore.redis")

_RETRYABLE = (RedisError, OSError, asyncio.TimeoutError)
PRESENCE = "presence"


def interests_of(event: Event) -> list[str]:
    """Who must hear of ``event``: 'c:<conversation>', 'u:<user>' or the presence channel."""
    match event:
        case ev.MemberJoined(conversation_id=cid, member=member):
            return [f"c:{cid}", f"u:{member.user_id}"]
        case ev.MemberLeft(conversation_id=cid, user_id=uid):
            return [f"c:{cid}", f"u:{uid}"]
        case ev.SessionRevoked(user_id=uid):
            return [f"u:{uid}"]
        case ev.PresenceChanged():
            return [PRESENCE]
        case _:
            return [f"c:{event.conversation_id}"]


class RedisBroadcaster:
    def __init__(
        self,
        *,
        url: str,
        encode: Callable[[Event], bytes],
        prefix: str = "convocore",
        outbox_size: int = 100_000,
    ) -> None:
        self._url, self._encode, self._prefix = url, encode, prefix
        self.origin = uuid.uuid4().hex[:16].encode()
        self._serial = 0
        self._local: list[Callable[[Event], None]] = []
        self._remote: list[Callable[[bytes], None]] = []
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
        interests = interests_of(event)
        self._serial += 1
        serial = str(self._serial).encode() if len(interests) > 1 else b"-"
        data = self.origin + b" " + serial + b" " + self._encode(event)
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


class RedisRateLimiter:
    """Fixed-window budgets shared by every process: one INCR (and EXPIRE) per event."""

    def __init__(self, *, url: str, prefix: str = "convocore") -> None:
        self._url, self._prefix = url, prefix
        self._redis: Redis | None = None
        self._fallback: dict[str, list[float]] = {}

    async def start(self) -> None:
        self._redis = Redis.from_url(self._url, socket_connect_timeout=1, socket_timeout=1)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def hit(self, key: str, *, limit: int, window_s: float) -> float | None:
        now = time.time()
        window = int(now // window_s)
        name = f"{self._prefix}:rl:{key}:{window}"
        try:
            if self._redis is None:
                raise ConnectionError("not started")
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(name)
            pipe.expire(name, max(1, int(window_s) + 1))
            count, _ = await pipe.execute()
        except _RETRYABLE:
            return self._local(key, limit=limit, window_s=window_s, now=now)  # Redis away: per process
        if int(count) > limit:
            return (window + 1) * window_s - now
        return None

    def _local(self, key: str, *, limit: int, window_s: float, now: float) -> float | None:
        recent = [t for t in self._fallback.get(key, []) if now - t < window_s]
        if len(recent) >= limit:
            self._fallback[key] = recent
            return window_s - (now - recent[0])
        self._fallback[key] = [*recent, now]
        return None
