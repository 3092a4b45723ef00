"""Fan-out, in the load generator: every room member holds a socket and takes turns sending at a
fixed total rate; every socket of the room (the sender's too) should receive every message once,
in seq order. The rate is stepped up until p99 passes the latency bound.

A body is 100 bytes: the send time (perf_counter_ns, 19 digits) padded with dots, so latency is
receipt time minus that, on one clock. Against Convocore a send is a ``message.send`` frame on the
conversation socket and is answered with an ``ack``; the bare relay answers nothing, so there
the messages sent are the ones expected.
"""

import asyncio
import itertools
import math
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from benchmarks.client import Account

BODY_BYTES = 100
P99_BOUND_MS = 50.0


class _Message(msgspec.Struct):
    seq: int
    body: str


class _Frame(msgspec.Struct):
    type: str
    message: _Message | None = None
    code: str | None = None


_decode = msgspec.json.Decoder(_Frame).decode


@dataclass
class Step:
    target_deliveries_per_s: float
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    duplicated: int = 0
    reordered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ns: list[int] = field(default_factory=list)
    first_send_ns: int = 0
    last_delivery_ns: int = 0


class Member(WSListener):
    """One socket: checks seq order as frames arrive (cheaply: only a gap costs a set)."""

    def __init__(self, run: "FanOut", room: int) -> None:
        super().__init__()
        self.run, self.room = run, room
        self.last = 0
        self.missing: set[int] = set()
        self.close_code: int | None = None
        self.transport: WSTransport | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.run.on_text(self, frame.get_payload_as_bytes(), time.perf_counter_ns())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value


class FanOut:
    def __init__(self, *, ws_urls: list[str], rooms: list[str], accounts: list[list[Account]], relay: bool) -> None:
        self.ws_urls, self.rooms, self.accounts, self.relay = ws_urls, rooms, accounts, relay
        self.members: list[list[Member]] = []
        self.expected = [0] * len(rooms)  # messages each room's sockets should have, in total
        self.step = Step(0)
        self._client_ids = itertools.count(1)

    # -- receiving ----------------------------------------------------------------------

    def on_text(self, member: Member, data: bytes, now: int) -> None:
        frame, step = _decode(data), self.step
        message = frame.message
        if message is not None and frame.type == "message.created":
            step.latencies_ns.append(now - int(message.body[:19]))
            step.delivered += 1
            step.last_delivery_ns = now
            seq = message.seq
            if seq == member.last + 1:
                member.last = seq
            elif seq > member.last:
                member.missing.update(range(member.last + 1, seq))
                member.last = seq
            elif seq in member.missing:
                member.missing.discard(seq)
                step.reordered += 1
            else:
                step.duplicated += 1
        elif frame.type == "ack":
            step.acked += 1
            self.expected[member.room] += 1
        elif frame.type == "error":
            step.errors[frame.code or "?"] += 1

    def lost(self) -> int:
        return sum(len(m.missing) + max(self.expected[m.room] - m.last, 0) for room in self.members for m in room)

    def closed(self) -> int:
        return sum(1 for room in self.members for m in room if m.close_code is not None)

    # -- connecting ---------------------------------------------------------------------

    async def connect(self, *, concurrency: int = 64) -> None:
        gate = asyncio.Semaphore(concurrency)
        self.members = [[Member(self, r) for _ in accounts] for r, accounts in enumerate(self.accounts)]

        async def one(member: Member, account: Account, index: int) -> None:
            base = self.ws_urls[index % len(self.ws_urls)]  # scale-out: alternate between processes
            url = f"{base}/ws/chat/{self.rooms[member.room]}/?token={account.token}"
            async with gate:
                transport, _ = await ws_connect(lambda: member, url, websocket_handshake_timeout=30)
            member.transport = transport

        jobs = []
        for r, room in enumerate(self.members):
            for i, member in enumerate(room):
                jobs.append(one(member, self.accounts[r][i], i))
        await asyncio.gather(*jobs)
        await asyncio.sleep(0.1)  # the last handshakes; the load generator then waits for an idle server

    async def close(self) -> None:
        for room in self.members:
            for m in room:
                if m.transport is not None:
                    m.transport.disconnect()
        for room in self.members:
            for m in room:
                if m.transport is not None:
                    await asyncio.wait_for(m.transport.wait_disconnected(), 5)

    # -- sending ------------------------------------------------------------------------

    def _send(self, k: int) -> None:
        rooms = len(self.members)
        room = k % rooms
        members = self.members[room]
        member = members[(k // rooms) % len(members)]
        body = f"{time.perf_counter_ns():019d}".ljust(BODY_BYTES, ".")
        frame = f'{{"type":"message.send","body":"{body}","client_id":"b{next(self._client_ids)}"}}'
        assert member.transport is not None
        member.transport.send(WSMsgType.TEXT, frame.encode())
        if self.relay:
            self.expected[room] += 1
        self.step.sent += 1

    async def run_step(self, deliveries_per_s: float, seconds: float, drain_s: float) -> dict[str, Any]:
        members = sum(len(room) for room in self.members) / len(self.members)
        msgs_per_s = deliveries_per_s / members
        lost_before = self.lost()
        self.step = step = Step(deliveries_per_s)
        cpu0, wall0 = _cpu(), time.perf_counter()
        step.first_send_ns = time.perf_counter_ns()
        total = max(1, round(msgs_per_s * seconds))
        k = 0
        while k < total:
            due = min(total, math.floor((time.perf_counter_ns() - step.first_send_ns) / 1e9 * msgs_per_s) + 1)
            while k < due:
                self._send(k)
                k += 1
            await asyncio.sleep(0.002)
        send_wall = time.perf_counter() - wall0
        deadline = time.perf_counter() + drain_s
        while time.perf_counter() < deadline and not self._drained():  # noqa: ASYNC110 - counters, not events
            await asyncio.sleep(0.01)
        cpu = _cpu() - cpu0
        return self._report(step, members, send_wall, cpu, time.perf_counter() - wall0, lost_before)

    def _drained(self) -> bool:
        step = self.step
        if not self.relay and step.acked + sum(step.errors.values()) < step.sent:
            return False
        per_room = sum(len(room) for room in self.members) / len(self.members)
        return step.delivered >= (step.acked if not self.relay else step.sent) * per_room

    def _report(
        self, step: Step, members: float, send_wall: float, cpu: float, wall: float, lost_before: int
    ) -> dict[str, Any]:
        lat = sorted(step.latencies_ns)
        span = max((step.last_delivery_ns - step.first_send_ns) / 1e9, send_wall)
        return {
            "target_deliveries_per_s": round(step.target_deliveries_per_s),
            "msgs_per_s": round(step.sent / send_wall, 1),
            "sent": step.sent,
            "acked": step.sent if self.relay else step.acked,
            "delivered": step.delivered,
            "deliveries_per_s": round(step.delivered / span, 1) if span else 0.0,
            "p50_ms": _ms(_pick(lat, 0.50)),
            "p99_ms": _ms(_pick(lat, 0.99)),
            "max_ms": _ms(lat[-1] if lat else 0),
            "lost": self.lost() - lost_before,
            "duplicated": step.duplicated,
            "reordered": step.reordered,
            "errors": dict(step.errors),
            "closed_sockets": self.closed(),
            "loadgen_cpu_pct": round(100 * cpu / wall, 1),
        }


def passed(step: dict[str, Any]) -> bool:
    clean = not (step["lost"] or step["duplicated"] or step["reordered"] or step["errors"] or step["closed_sockets"])
    kept_up = step["deliveries_per_s"] >= 0.9 * step["target_deliveries_per_s"]
    return clean and kept_up and step["p99_ms"] <= P99_BOUND_MS


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pick(values: list[int], q: float) -> int:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)
