"""Rate-limit budgets counted in Redis, shared by every process."""

import time

from redis.asyncio import Redis

from convocore.adapters.redis import RETRYABLE as _RETRYABLE


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
