"""Abuse of the live sockets, against a real `convocore serve --memory` process: generated and
malformed frames, wrong types, unknown frame types, oversized, binary and deeply nested frames,
random bytes and text, and floods. Each gets an `error` frame (or its documented answer) and the
socket stays open (docs/realtime.md: "an error frame never closes the socket"); the process stays
up; and a well-behaved socket on the same conversation keeps sending and receiving throughout,
its messages acknowledged and every `message.created` in seq order with no gap.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.remote import SERVER_FRAME_TYPES
from tests.support.server import ServerProcess

FRAME_LIMIT = 16_384  # CONVOCORE_WS_MAX_FRAME_BYTES, the default
SERVER_FRAMES = SERVER_FRAME_TYPES
ERROR_CODES = {
    "bad-frame",
    "frame-too-large",
    "validation-error",
    "not-found",
    "rate-limited",
    "forbidden",
    "conflict",
    "unavailable",
    "internal-error",
}
# The end of the answers to one frame: an error naming a field no generated frame uses.
SENTINEL = json.dumps({"type": "ping", "sentinel": 1})


@dataclass
class Scene:
    server: ServerProcess
    abuser: str  # access tokens
    bystander: str
    room: str  # a group both are in
    aside: str  # another group of the abuser's
    elsewhere: str  # a group the abuser is not in

    def url(self, token: str, conversation_id: str | None = None) -> str:
        path = f"/ws/chat/{conversation_id}/" if conversation_id else "/ws/"
        return f"{self.server.ws_url}{path}?token={token}"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    server = ServerProcess("--memory", cwd=tmp_path_factory.mktemp("ws-fuzz")).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            tokens, ids = [], []
            for name in ("abuser", "bystander", "other"):
                http.post("/api/register/", json={"username": name, "password": "correct horse"}).raise_for_status()
                r = http.post("/api/login/", json={"username": name, "password": "correct horse"})
                tokens.append(r.json()["access_token"])
                ids.append(r.json()["user"]["id"])

            def group(token: str, *members: str) -> str:
                body = {"kind": "group", "title": "room", "members": list(members)}
                r = http.post("/api/conversations/", json=body, headers={"Authorization": f"Bearer {token}"})
                r.raise_for_status()
                return str(r.json()["id"])

            room, aside, elsewhere = group(tokens[0], ids[1]), group(tokens[0]), group(tokens[2], ids[1])
        yield Scene(server, tokens[0], tokens[1], room, aside, elsewhere)
    finally:
        server.stop()


@dataclass
class Bystander:
    """A well-behaved client on its own socket: sends a message every few milliseconds and
    waits for its ack and its message.created, checking that message.created frames (its own
    and anyone else's) arrive in seq order with no gap."""

    url: str
    acked: int = 0
    failure: str | None = None
    last_seq: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # client_ids are idempotency keys

    def __enter__(self) -> "Bystander":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=30)

    def progress(self, at_least: int, within: float = 10) -> None:
        """Wait until `at_least` more sends were acknowledged, or fail."""
        target, deadline = self.acked + at_least, time.monotonic() + within
        while self.acked < target and self.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.failure is None, self.failure
        assert self.acked >= target, f"the bystander stalled at {self.acked} acks"

    def _run(self) -> None:
        try:
            with connect(self.url, open_timeout=10) as ws:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    self._send_one(ws, f"{self.run_id}-{n}")
                    self.acked += 1
                    self.stop.wait(0.005)
        except Exception as error:  # reported by progress() and the tests
            self.failure = f"{type(error).__name__}: {error}"

    def _send_one(self, ws: ClientConnection, client_id: str) -> None:
        ws.send(json.dumps({"type": "message.send", "body": f"still here {client_id}", "client_id": client_id}))
        acked = created = False
        while not (acked and created):
            frame = json.loads(ws.recv(timeout=10))
            if frame["type"] == "message.created":
                seq = frame["message"]["seq"]
                if self.last_seq is not None and seq != self.last_seq + 1:
                    raise AssertionError(f"seq {seq} after {self.last_seq}")
                self.last_seq = seq
                created = created or frame["message"]["client_id"] == client_id
            elif frame["type"] == "ack":
                acked = acked or frame["client_id"] == client_id
            elif frame["type"] == "error":
                raise AssertionError(f"error frame for a good send: {frame}")


def answers(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame up to the answer to SENTINEL (which is sent here), checked against the
    documented server frames; fails if the socket closes."""
    ws.send(SENTINEL)
    seen: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] in SERVER_FRAMES, frame
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES, frame
            assert set(frame) >= {"code", "detail", "field", "client_id"}, frame
            if frame["field"] == "sentinel":
                return seen
        seen.append(frame)


def codes(frames: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in frames if f["type"] == "error"]


def alive(scene: Scene) -> None:
    assert scene.server.process is not None and scene.server.process.poll() is None, scene.server.output()
    assert httpx.get(f"{scene.server.base_url}/health", timeout=5).status_code == 200


# Generated frames ---------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)  # Cs: not encodable as UTF-8
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
TYPES = st.sampled_from(["message.send", "ping", "typing", "resume", "ack", "pong", "error", "MESSAGE.SEND", ""]) | TEXT


def frame_objects(scene: Scene) -> st.SearchStrategy[dict[str, Any]]:
    conversation = st.sampled_from([scene.room, scene.aside, scene.elsewhere, "nope", ""]) | JSON
    return st.fixed_dictionaries(
        {"type": TYPES},
        optional={
            "body": TEXT | st.sampled_from(["   ", "x" * 4001]) | JSON,
            "client_id": TEXT | st.integers() | st.none(),
            "reply_to": st.integers(min_value=-3, max_value=10**20) | JSON,
            "conversation_id": conversation,
            "since": st.dictionaries(conversation.filter(lambda c: isinstance(c, str)), st.integers(-2, 10**6) | JSON)
            | JSON,
            "extra": JSON,
        },
    )


@pytest.mark.parametrize("kind", ["conversation socket", "user socket"])
def test_generated_frames_get_documented_answers_and_never_close_the_socket(scene: Scene, kind: str) -> None:
    room = scene.room if kind == "conversation socket" else None
    with (
        Bystander(scene.url(scene.bystander, scene.room)) as bystander,
        connect(scene.url(scene.abuser, room)) as ws,
    ):
        bystander.progress(1)
        objects = frame_objects(scene)

        @settings(
            max_examples=250,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(frame=objects.map(json.dumps) | JSON.map(json.dumps) | TEXT | st.binary(max_size=64))
        def one(frame: str | bytes) -> None:
            ws.send(frame)
            got = answers(ws)
            if isinstance(frame, bytes):
                assert codes(got) == ["bad-frame"], got
            else:
                try:
                    json.loads(frame)
                except ValueError:
                    assert codes(got) == ["bad-frame"], got
            assert "internal-error" not in codes(got), got

        one()
        bystander.progress(3)
    alive(scene)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param("x" * FRAME_LIMIT, "bad-frame", id="at the limit: read, not JSON"),
        pytest.param("x" * (FRAME_LIMIT + 1), "frame-too-large", id="one byte over"),
        pytest.param("é" * (FRAME_LIMIT // 2 + 1), "frame-too-large", id="over in bytes, not in characters"),
        pytest.param(json.dumps({"type": "message.send", "body": "x" * 100_000}), "frame-too-large", id="100 KB"),
        pytest.param("y" * 1_000_000, "frame-too-large", id="1 MB"),
        pytest.param("[" * 5000 + "]" * 5000, "validation-error", id="nested arrays"),
        pytest.param('{"x":' + "[" * 5000 + "]" * 5000 + ',"type":"ping"}', "bad-frame", id="nested before tag"),
        pytest.param('{"x":' + '{"a":' * 2000 + "1" + "}" * 2000 + ',"type":"ping"}', "bad-frame", id="nested objects"),
        pytest.param('{"type": "message.send", "body": "\\ud800"}', "bad-frame", id="lone surrogate escape"),
        pytest.param('{"type": "ping"', "bad-frame", id="truncated"),
        pytest.param('{"type": "ping"} {"type": "ping"}', "bad-frame", id="two objects"),
        pytest.param("\x00\x01\x02", "bad-frame", id="control characters"),
        pytest.param('{"type": 1}', "validation-error", id="type not a string"),
        pytest.param('{"type": "message.send", "body": 5}', "validation-error", id="body not a string"),
        pytest.param('{"type": "message.send", "body": "hi", "reply_to": 1e400}', "validation-error", id="huge float"),
        pytest.param('{"type": "resume", "since": {"x": -1}}', "validation-error", id="negative since"),
        pytest.param('{"type": "resume", "since": []}', "validation-error", id="since not an object"),
    ],
)
def test_malformed_frames_get_an_error_frame(scene: Scene, raw: str, code: str) -> None:
    with (
        Bystander(scene.url(scene.bystander, scene.room)) as bystander,
        connect(scene.url(scene.abuser, scene.room), max_size=None) as ws,
    ):
        ws.send(raw)
        got = answers(ws)
        assert codes(got) == [code], got
        bystander.progress(2)
    alive(scene)


@pytest.mark.parametrize("kind", ["conversation socket", "user socket"])
def test_a_flood_is_answered_frame_by_frame_and_others_are_served(scene: Scene, kind: str) -> None:
    """2,000 frames as fast as the socket takes them, read as they come: each is answered, in
    order. Should the reader still fall more than the send queue (1024 frames) behind, the
    documented outcome is 4408, for that socket alone."""
    room = scene.room if kind == "conversation socket" else None
    pattern: list[str | bytes] = [
        SENTINEL.replace("sentinel", "flood"),
        "not json",
        '{"type":"bogus"}',
        b"\x00",
        '{"type":"ping"}',
    ]
    expected = ["validation-error", "bad-frame", "validation-error", "bad-frame", "pong"] * 400
    with (
        Bystander(scene.url(scene.bystander, scene.room)) as bystander,
        connect(scene.url(scene.abuser, room), max_queue=None) as ws,
    ):
        answered: list[str] = []
        closed: list[int] = []

        def read() -> None:
            try:
                while len(answered) < len(expected):
                    frame = json.loads(ws.recv(timeout=20))
                    if frame["type"] in ("error", "pong"):
                        answered.append(frame.get("code", "pong"))
            except ConnectionClosed as error:
                closed.append(error.rcvd.code if error.rcvd else 0)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for frame in pattern * 400:
                ws.send(frame)
        except ConnectionClosed:
            pass  # the 4408 came while still sending; the reader saw it
        reader.join(timeout=60)
        assert answered == expected[: len(answered)]  # nothing lost, doubled or reordered
        assert (len(answered), closed) == (len(expected), []) or closed == [4408], (len(answered), closed)
        bystander.progress(3)
        if not closed:
            ws.send('{"type":"ping"}')
            assert "pong" in [f["type"] for f in answers(ws)]  # still open, still answering
    alive(scene)


def test_a_flood_never_read_costs_only_that_socket(scene: Scene) -> None:
    """A client that floods without reading its answers fills its own send queue: that socket,
    and only it, is closed with 4408 (or, if the server kept up, it is still open)."""
    with (
        Bystander(scene.url(scene.bystander, scene.room)) as bystander,
        connect(scene.url(scene.abuser, scene.room)) as ws,
    ):
        try:
            for _ in range(2_000):
                ws.send('{"type":"ping"}')
            pongs = 0
            while pongs < 2_000:
                frame = json.loads(ws.recv(timeout=20))
                pongs += frame["type"] == "pong"
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4408, closed
        bystander.progress(3)
    alive(scene)


def test_another_conversation_cannot_be_reached_through_a_socket(scene: Scene) -> None:
    """IDOR on the socket: naming a conversation the abuser is not in, or another one on a
    conversation socket, is refused and stores nothing."""
    with connect(scene.url(scene.abuser, scene.room)) as ws:
        ws.send(json.dumps({"type": "message.send", "body": "sneaky", "conversation_id": scene.elsewhere}))
        assert codes(answers(ws)) == ["validation-error"]
        ws.send(json.dumps({"type": "typing", "conversation_id": scene.elsewhere}))
        assert codes(answers(ws)) == ["validation-error"]
    with connect(scene.url(scene.abuser)) as ws:
        ws.send(json.dumps({"type": "message.send", "body": "sneaky", "conversation_id": scene.elsewhere}))
        assert codes(answers(ws)) == ["not-found"]
        ws.send(json.dumps({"type": "typing", "conversation_id": scene.elsewhere}))
        assert codes(answers(ws)) == ["not-found"]
        ws.send(json.dumps({"type": "resume", "since": {scene.elsewhere: 0}}))
        assert codes(answers(ws)) == ["not-found"]
    r = httpx.get(
        f"{scene.server.base_url}/api/messages/{scene.elsewhere}/",
        headers={"Authorization": f"Bearer {scene.bystander}"},
        timeout=10,
    )
    assert all(m["body"] != "sneaky" for m in r.json()["items"])
