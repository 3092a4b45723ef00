"""Shared channel vs a channel per conversation, for the Redis relay between processes.

Two subscriber processes each host the sockets of half of the conversations. With one shared
channel, each receives every event and discards the half it has no sockets for (after decoding
only the small route header). With a channel per conversation, each receives only its own
half, but subscribes to one channel per conversation it hosts. The publisher sends the same
events either way. Reported: wall time until both subscribers have every event they need,
and the subscribers' CPU time.

    python -m benchmarks.redis_channels [--events 100000] [--conversations 1000]
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import msgspec
from redis.asyncio import Redis

from convocore.entrypoints.frames import Route

URL = os.environ.get("CONVOCORE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _subscriber(mode: str, mine: list[str], expected: int, prefix: str, ready: Event, out: "Queue[Any]") -> None:
    async def run() -> None:
        redis = Redis.from_url(URL)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        channels = [f"{prefix}:shared"] if mode == "shared" else [f"{prefix}:c:{c}" for c in mine]
        for i in range(0, len(channels), 500):
            await pubsub.subscribe(*channels[i : i + 500])
        hosted, decoder, got = set(mine), msgspec.json.Decoder(Route), 0
        ready.set()
        start = None
        async for message in pubsub.listen():
            start = start or time.perf_counter()
            head = message["data"].partition(b"\n")[0]
            if decoder.decode(head).conversation_id in hosted:
                got += 1
                if got == expected:
                    break
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out.put({"cpu_s": usage.ru_utime + usage.ru_stime})
        await redis.aclose()

    asyncio.run(run())


async def _publish(mode: str, events: list[tuple[str, bytes]], prefix: str) -> None:
    redis = Redis.from_url(URL)
    pipe = redis.pipeline(transaction=False)
    for n, (cid, data) in enumerate(events, 1):
        pipe.publish(f"{prefix}:shared" if mode == "shared" else f"{prefix}:c:{cid}", data)
        if n % 512 == 0:
            await pipe.execute()
    await pipe.execute()
    await redis.aclose()


def measure(mode: str, n_events: int, n_conversations: int) -> dict[str, float]:
    conversations = [f"conv-{i:05d}" for i in range(n_conversations)]
    halves = [conversations[0::2], conversations[1::2]]
    body = json.dumps({"type": "message.created", "message": {"body": "x" * 100}}).encode()
    events = []
    for i in range(n_events):
        cid = conversations[i % n_conversations]
        head = msgspec.json.encode(Route(kind="message.created", conversation_id=cid, seq=i))
        events.append((cid, head + b"\n" + body))
    expected = [sum(1 for cid, _ in events if cid in set(h)) for h in halves]
    prefix = f"bench-{os.getpid()}-{mode}"
    ctx = mp.get_context("spawn")
    out: Queue[Any] = ctx.Queue()
    readies = [ctx.Event() for _ in halves]
    procs = [
        ctx.Process(target=_subscriber, args=(mode, h, e, prefix, r, out))
        for h, e, r in zip(halves, expected, readies, strict=True)
    ]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(30)
    time.sleep(0.2)
    start = time.perf_counter()
    asyncio.run(_publish(mode, events, prefix))
    results = [out.get(timeout=120) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join(10)
    return {"wall_s": wall, "events_per_s": n_events / wall, "subscriber_cpu_s": sum(r["cpu_s"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.events} events over {args.conversations} conversations, 2 subscriber processes")
    print(f"{'mode':<18}{'wall s':>10}{'events/s':>12}{'subscriber CPU s':>18}")
    for mode in ("shared", "per-conversation"):
        r = measure(mode, args.events, args.conversations)
        print(f"{mode:<18}{r['wall_s']:>10.2f}{r['events_per_s']:>12.0f}{r['subscriber_cpu_s']:>18.2f}")


if __name__ == "__main__":
    main()
