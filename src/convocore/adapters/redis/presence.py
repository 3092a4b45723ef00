"""Who has a live socket anywhere, kept in Redis by every process for its own sockets."""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis

from convocore.adapters.redis import RETRYABLE as _RETRYABLE

log = logging.getLogger("convocore.redis")


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
