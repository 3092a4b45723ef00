"""The load generator: a separate process on uvloop, pinned to its own core, that runs one job
against servers it is given and writes its result as JSON.

    python -m benchmarks.loadgen JOB.json RESULT.json
"""

import asyncio
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks import procstat
from benchmarks.client import Account, Http, accounts, groups, split
from benchmarks.fanout import FanOut, passed

RETRIES = 2  # more tries of a fan-out step that kept up but missed the p99 bound
SETTLE_S = 30.0  # after the last step: how long to wait for late deliveries before calling them lost


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _profiled(job: dict[str, Any]) -> Iterator[None]:
    """benchmarks.profile: py-spy samples the server for as long as the block runs (its own
    ``--duration``), then is waited for, or killed if it outlasts the run by a minute."""
    profiler = subprocess.Popen(job["profile"]) if job.get("profile") else None
    try:
        yield
    finally:
        if profiler is not None:
            try:
                profiler.wait(timeout=60)
            finally:
                if profiler.poll() is None:
                    profiler.kill()
                    profiler.wait()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


# -- 1. REST send ---------------------------------------------------------------------------


async def rest(job: dict[str, Any]) -> dict[str, Any]:
    clients, per_client = job["clients"], job["users_per_client"]
    everyone = await accounts(job["base_url"], clients * per_client, prefix=job["prefix"])
    rooms = split(everyone, clients, per_client)
    conversations = await groups(job["base_url"], rooms, title="rest")
    latencies: list[float] = []
    acked: dict[str, int] = dict.fromkeys(conversations, 0)
    statuses: dict[int, int] = {}
    stop_at = 0.0

    async def client(n: int) -> None:
        cid, users = conversations[n], rooms[n]
        async with Http(job["base_url"]) as http:
            k = 0
            while time.perf_counter() < stop_at:
                body = json.dumps({"conversation_id": cid, "body": "x" * 100, "client_id": f"r{n}-{k}"}).encode()
                t0 = time.perf_counter()
                status, _ = await http.request("POST", "/api/messages/", body, users[k % len(users)].token)
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 201:
                    acked[cid] += 1
                k += 1

    with _profiled(job):  # benchmarks.profile --workload rest
        cpu0, t0 = _cpu(), time.perf_counter()
        stop_at = t0 + job["seconds"]
        await asyncio.gather(*(client(n) for n in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "conversations": len(conversations),
        "users": len(everyone),
        "seconds": round(wall, 2),
        "acked": sum(acked.values()),
        "msgs_per_s": round(sum(acked.values()) / wall, 1),
        "p50_ms": _pct(latencies, 0.50),
        "p99_ms": _pct(latencies, 0.99),
        "statuses": {str(k): v for k, v in statuses.items()},
        "acked_per_conversation": acked,
        "loadgen_cpu_pct": round(100 * (_cpu() - cpu0) / wall, 1),
    }


# -- 2, 5, 6. fan-out -------------------------------------------------------------------------


async def fanout(job: dict[str, Any]) -> dict[str, Any]:
    rooms_n, members_n = job["rooms"], job["members"]
    if job["relay"]:
        rooms = [f"r{n}" for n in range(rooms_n)]
        room_accounts = [[Account(f"u{r}-{m}", "-") for m in range(members_n)] for r in range(rooms_n)]
    else:
        everyone = await accounts(job["http_url"], rooms_n * members_n, prefix=job["prefix"])
        room_accounts = split(everyone, rooms_n, members_n)
        rooms = await groups(job["http_url"], room_accounts, title="fan-out")
    run = FanOut(ws_urls=job["ws_urls"], rooms=rooms, accounts=room_accounts, relay=job["relay"])
    await run.connect()
    pids: list[int] = job["server_pids"]
    settled_s = await _settle(pids)
    warmup = await run.run_step(float(job["start_deliveries_per_s"]), min(1.0, job["seconds"]), job["drain_s"])
    steps: list[dict[str, Any]] = []
    reference = None
    with _profiled(job):  # benchmarks.profile samples the server while the steps run
        try:
            good = bad = None
            rate = float(job["start_deliveries_per_s"])
            for _ in range(job["max_steps"]):
                step = await _step(run, pids, rate, job, steps)
                for _ in range(RETRIES if job["max_steps"] > 2 else 0):
                    kept_up = step["deliveries_per_s"] >= 0.9 * step["target_deliveries_per_s"]
                    if step["passed"] or not kept_up or step["lost"] or step["closed_sockets"]:
                        break
                    # The server kept up but p99 did not: try the same rate again before it counts as
                    # too fast, since on a shared machine a stall elsewhere can spoil a step or two.
                    await asyncio.sleep(job["drain_s"])  # let an overloaded server's backlog clear
                    step = await _step(run, pids, rate, job, steps)
                    step["retried"] = True
                if step["closed_sockets"]:
                    break
                if step["passed"]:
                    good = rate
                else:
                    bad = rate
                    await asyncio.sleep(job["drain_s"])
                if bad is None:
                    rate *= 2
                elif good is None:
                    rate /= 2
                elif bad / good <= job.get("resolution", 1.3):
                    break
                else:
                    rate = math.sqrt(good * bad)
            if job.get("reference_rate"):  # scale-out: one and two processes compared at one same rate
                await asyncio.sleep(job["drain_s"])
                reference = []
                for _ in range(job.get("reference_repeats", 3)):  # the median of three, against stalls
                    reference.append(await _step(run, pids, float(job["reference_rate"]), job, []))
            # A step that overloads the server ends with messages still on their way, counted as
            # lost in that step. Whether any is lost for good is known only once they stop coming.
            settle_started = time.perf_counter()
            while run.lost() and time.perf_counter() - settle_started < SETTLE_S:  # noqa: ASYNC110 - counters
                await asyncio.sleep(0.05)
            settled = {"missing": run.lost(), "waited_s": round(time.perf_counter() - settle_started, 2)}
        finally:
            await run.close()
    best = max((s for s in steps if s["passed"]), key=lambda s: s["deliveries_per_s"], default=None)
    return {
        "rooms": rooms_n,
        "members": members_n,
        "sockets": rooms_n * members_n,
        "users": 0 if job["relay"] else rooms_n * members_n,
        "processes": len(job["ws_urls"]),
        "settled_in_s": settled_s,
        "warmup": warmup,
        "best": best,
        "steps": steps,
        "reference": reference,
        "totals": {k: sum(s[k] for s in steps) for k in ("lost", "duplicated", "reordered", "delivered")},
        "at_end": settled,  # messages never delivered to some socket, after the last step settled
    }


async def _step(run: FanOut, pids: list[int], rate: float, job: dict[str, Any], steps: list[Any]) -> dict[str, Any]:
    """One step at ``rate``, recorded in ``steps`` (retries too)."""
    server0, wall0 = procstat.total_cpu_s(pids), time.perf_counter()
    machine0, steal0 = procstat.machine_busy_and_steal_s()
    step = await run.run_step(rate, job["seconds"], job["drain_s"])
    wall = time.perf_counter() - wall0
    server_s = procstat.total_cpu_s(pids) - server0
    step["server_cpu_pct"] = round(100 * server_s / wall)
    # Server CPU per message sent, its deliveries included: unlike the pass/fail of a step, this
    # shows a change smaller than the ladder's step (compare at one rate, e.g. the first step).
    step["server_us_per_msg"] = round(1e6 * server_s / step["acked"]) if step["acked"] else None
    machine1, steal1 = procstat.machine_busy_and_steal_s()
    step["machine_cpu_pct"] = round(100 * (machine1 - machine0) / wall)
    # Of that, what other guests of the host took from this machine's cores (a shared VM's
    # neighbours): a step that went wrong with steal high says more about the host than the code.
    step["steal_pct"] = round(100 * (steal1 - steal0) / wall, 1)
    step["passed"] = passed(step)
    steps.append(step)
    print(_line(step), file=sys.stderr, flush=True)
    return step


async def _settle(pids: list[int], *, idle_pct: float = 10, limit_s: float = 60) -> float:
    """Wait until the servers are done with the connections just opened (presence, catch-up)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        before = procstat.total_cpu_s(pids)
        await asyncio.sleep(0.25)
        if 100 * (procstat.total_cpu_s(pids) - before) / 0.25 < idle_pct * len(pids):
            break
    return round(time.perf_counter() - start, 2)


def _line(s: dict[str, Any]) -> str:
    return (
        f"  step {s['target_deliveries_per_s']:>8}/s: delivered {s['deliveries_per_s']:>9.0f}/s "
        f"p50 {s['p50_ms']:.1f} p99 {s['p99_ms']:.1f} ms lost {s['lost']} dup {s['duplicated']} "
        f"reord {s['reordered']} err {s['errors']} closed {s['closed_sockets']} "
        f"cpu server {s['server_cpu_pct']}% ({s['server_us_per_msg']} us/msg) loadgen {s['loadgen_cpu_pct']}% "
        f"machine {s['machine_cpu_pct']}% (steal {s['steal_pct']}%) "
        f"{'ok' if s['passed'] else 'FAIL'}"
    )


# -- 3. history -----------------------------------------------------------------------------


async def history(job: dict[str, Any]) -> dict[str, Any]:
    cid, tokens, depth = job["conversation_id"], job["tokens"], job["depth"]
    positions = {"newest": f"/api/messages/{cid}/?limit=50", "deep": f"/api/messages/{cid}/?before=51&limit=50"}
    latencies: dict[str, list[float]] = {name: [] for name in positions}
    cpu0, t0 = _cpu(), time.perf_counter()
    async with Http(job["base_url"]) as http:
        for n in range(job["warmup"] + job["requests"]):
            for name, path in positions.items():
                start = time.perf_counter()
                status, body = await http.request("GET", path, token=tokens[n % len(tokens)])
                elapsed = (time.perf_counter() - start) * 1000
                if status != 200:
                    raise RuntimeError(f"GET {path} -> {status}: {body[:200]!r}")
                if n >= job["warmup"]:
                    latencies[name].append(elapsed)
                if n == 0:
                    seqs = [m["seq"] for m in json.loads(body)["items"]]
                    want = list(range(depth - 49, depth + 1)) if name == "newest" else list(range(1, 51))
                    if seqs != want:
                        raise RuntimeError(f"{name} page has seqs {seqs[:3]}...{seqs[-3:]}, expected {want[0]}..")
        # Then posts into the same conversation, one at a time: what a post costs at that depth
        # (it once grew with the history; benchmarks/NOTES.md). Each user stays under
        # the send limit (20 per 10 s): at most posts / users each.
        posted: list[float] = []
        for n in range(job["posts"]):
            body = json.dumps({"conversation_id": cid, "body": "x" * 100}).encode()
            start = time.perf_counter()
            status, answer = await http.request("POST", "/api/messages/", body, token=tokens[n % len(tokens)])
            elapsed = (time.perf_counter() - start) * 1000
            if status != 201:
                raise RuntimeError(f"POST at depth -> {status}: {answer[:200]!r}")
            if json.loads(answer)["seq"] != depth + n + 1:
                raise RuntimeError(f"post {n} at depth got seq {json.loads(answer)['seq']}, expected {depth + n + 1}")
            if n >= job["posts"] // 10:  # the first tenth warms up
                posted.append(elapsed)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"messages": depth, "page": 50, "requests_per_position": job["requests"]}
    for name, values in (*latencies.items(), ("post", posted)):
        out[name] = {"p50_ms": _pct(values, 0.50), "p99_ms": _pct(values, 0.99), "max_ms": _pct(values, 1.0)}
    out["posts"] = len(posted)
    out["loadgen_cpu_pct"] = round(100 * (_cpu() - cpu0) / wall, 1)
    return out


# -- 4. idle connections ------------------------------------------------------------------


class _Idle(WSListener):
    def __init__(self, pongs: list[int]) -> None:
        super().__init__()
        self.pongs = pongs
        self.close_code: int | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT and b'"pong"' in frame.get_payload_as_bytes():
            self.pongs[0] += 1
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value


async def connections(job: dict[str, Any]) -> dict[str, Any]:
    users_n, sockets_n, pid = job["users"], job["sockets"], job["server_pid"]
    everyone = await accounts(job["base_url"], users_n, prefix=job["prefix"])
    await groups(job["base_url"], split(everyone, users_n // job["group_size"], job["group_size"]), title="idle")
    pongs = [0]
    gate = asyncio.Semaphore(64)

    async def open_many(count: int) -> list[tuple[WSTransport, _Idle]]:
        async def one(n: int) -> tuple[WSTransport, _Idle]:
            url = f"{job['ws_url']}/ws/?token={everyone[n % users_n].token}"
            async with gate:
                listener = _Idle(pongs)
                transport, _ = await ws_connect(lambda: listener, url, websocket_handshake_timeout=30)
            return transport, listener

        return list(await asyncio.gather(*(one(n) for n in range(count))))

    async def close_all(opened: list[tuple[WSTransport, _Idle]]) -> None:
        for transport, _ in opened:
            transport.disconnect()
        for transport, _ in opened:
            await asyncio.wait_for(transport.wait_disconnected(), 10)

    await close_all(await open_many(min(100, sockets_n)))  # warm the server's allocator and caches
    await asyncio.sleep(1.0)
    before = procstat.rss_kib(pid)
    opened = await open_many(sockets_n)
    for transport, _ in opened:  # an answered ping proves the socket got past authentication
        transport.send(WSMsgType.TEXT, b'{"type":"ping"}')
    deadline = time.perf_counter() + 30
    while pongs[0] < sockets_n and time.perf_counter() < deadline:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    after = procstat.rss_kib(pid)
    open_now = sum(1 for _, listener in opened if listener.close_code is None)
    await close_all(opened)
    return {
        "sockets": sockets_n,
        "users": users_n,
        "sockets_per_user": round(sockets_n / users_n, 2),
        "authenticated": pongs[0],
        "still_open": open_now,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_socket": round((after - before) / sockets_n, 2),
    }


JOBS = {"rest": rest, "fanout": fanout, "history": history, "connections": connections}


def main() -> None:
    job_path, result_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if job.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {job["cpu"]})
    result = uvloop.run(JOBS[job["kind"]](job))
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
