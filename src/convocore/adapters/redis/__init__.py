"""Redis adapters: the cross-process broadcaster (and its wire codec), presence, rate limits."""

import asyncio

from redis.exceptions import RedisError

# What a lost or busy Redis raises: the adapters carry on without it and retry.
RETRYABLE = (RedisError, OSError, asyncio.TimeoutError)
