"""The socket frames written straight to the transport (entrypoints/direct.py) are exactly the
bytes the websockets library would put on the wire for the same text."""

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from convocore.domain import events as ev
from convocore.domain.conversations import Conversation, Member, Role
from convocore.domain.messages import Message
from convocore.entrypoints.direct import DirectWriter, text_frame
from convocore.entrypoints.frames import kind_of, route_of
from convocore.entrypoints.hub import Connection
from convocore.entrypoints.wsserver import WebSocketProtocol, _Flag


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_websockets_would_send(size: int) -> None:
    text = ("é" if size % 2 else "x") * (size // 2 if size % 2 else size)

    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])

    assert text_frame(text) == expected


def test_the_same_text_is_encoded_once_and_a_different_one_afresh() -> None:
    first = "".join(["hello ", "room"])  # built at run time: a distinct object each call
    same_value = "".join(["hello ", "room"])
    other = "".join(["hello ", "moon"])

    frame = text_frame(first)

    assert text_frame(first) is frame
    assert text_frame(same_value) == frame
    assert text_frame(other).endswith(b"hello moon") and text_frame(other) != frame
    assert text_frame(first) == frame  # after another text, still right


# Any negotiated extension: frames must then go through websockets to be compressed.
_DEFLATE = PerMessageDeflate(
    remote_no_context_takeover=False,
    local_no_context_takeover=False,
    remote_max_window_bits=15,
    local_max_window_bits=15,
)


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


def _protocol() -> WebSocketProtocol:
    """The protocol ``convocore serve`` runs, in the state of an accepted, open socket."""
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    conn = SimpleNamespace(state=State.OPEN, extensions=[])
    for name, value in {"conn": conn, "transport": _Transport(), "writable": _Flag()}.items():
        setattr(protocol, name, value)
    protocol.close_sent = protocol.disconnected = False
    return protocol


def _socket(server_send: Any, protocol: WebSocketProtocol) -> Connection:
    """A hub connection writing straight to ``protocol``'s transport, or through ``server_send``."""
    return Connection(
        send=server_send,
        user_id="u",
        session_id="s",
        expires_at=datetime(2100, 1, 1, tzinfo=UTC),
        queue_size=8,
        direct=DirectWriter.of(protocol.send),
    )


async def test_frames_go_straight_to_the_transport_of_the_protocol_serve_runs() -> None:
    protocol = _protocol()
    writer = DirectWriter.of(protocol.send)
    assert writer is not None

    assert writer.write('{"type":"pong"}')
    await asyncio.sleep(0)  # the end of this round of the loop

    assert protocol.transport.written == [text_frame('{"type":"pong"}')]  # type: ignore[attr-defined]


async def test_a_sockets_frames_of_one_round_are_written_together_in_order() -> None:
    protocols = [_protocol(), _protocol()]
    writers = [DirectWriter.of(protocol.send) for protocol in protocols]
    assert writers[0] is not None and writers[1] is not None

    for n in range(3):
        assert writers[0].write(f'{{"n":{n}}}')
    assert writers[1].write('{"n":9}')
    assert protocols[0].transport.written == []  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert writers[0].write('{"n":3}')  # the next round
    await asyncio.sleep(0)

    assert protocols[0].transport.written == [  # type: ignore[attr-defined]
        text_frame('{"n":0}') + text_frame('{"n":1}') + text_frame('{"n":2}'),
        text_frame('{"n":3}'),
    ]
    assert protocols[1].transport.written == [text_frame('{"n":9}')]  # type: ignore[attr-defined]


async def test_frames_waiting_for_the_round_go_before_the_long_way_and_never_after_a_close() -> None:
    protocol = _protocol()

    async def server_send(message: dict[str, object]) -> None:
        protocol.transport.write(repr(message).encode())

    socket = _socket(server_send, protocol)
    socket.offer('{"n":1}')
    protocol.writable.clear()  # pushing back: now only the long way will do
    socket.offer('{"n":2}')
    assert protocol.transport.written == [  # type: ignore[attr-defined]
        text_frame('{"n":1}'),
        repr({"type": "websocket.send", "text": '{"n":2}'}).encode(),
    ]

    closing = _protocol()
    writer = DirectWriter.of(closing.send)
    assert writer is not None and writer.write('{"n":3}')
    closing.conn.state = State.CLOSING  # the close handshake began within the round
    await asyncio.sleep(0)
    assert closing.transport.written == []  # type: ignore[attr-defined]


def test_anything_but_an_open_writable_socket_goes_the_long_way() -> None:
    async def other_server_send(message: dict[str, object]) -> None: ...

    assert DirectWriter.of(other_server_send) is None
    compressing = _protocol()
    compressing.conn.extensions = [_DEFLATE]  # negotiated in the handshake: the socket never writes directly
    assert DirectWriter.of(compressing.send) is None
    for change in ("pushing back", "close sent", "transport closing"):
        protocol = _protocol()
        if change == "pushing back":
            protocol.writable.clear()
        elif change == "close sent":
            protocol.close_sent = True
        else:
            protocol.transport.closing = True  # type: ignore[attr-defined]
        writer = DirectWriter.of(protocol.send)
        assert writer is not None
        assert not writer.write("x"), change
        assert protocol.transport.written == []  # type: ignore[attr-defined]


async def test_a_socket_whose_close_handshake_began_gets_no_frame() -> None:
    """Its state is checked when the round's frames are written, not per frame."""
    protocol = _protocol()
    protocol.conn.state = State.CLOSING
    writer = DirectWriter.of(protocol.send)
    assert writer is not None
    writer.write("x")
    await asyncio.sleep(0)
    writer.flush()
    assert protocol.transport.written == []  # type: ignore[attr-defined]


async def test_a_socket_that_fails_to_write_does_not_stop_delivery_to_the_others() -> None:
    def broken(data: object) -> None:
        raise RuntimeError("the handle is closed")

    async def server_send(message: dict[str, object]) -> None: ...

    protocols = [_protocol() for _ in range(3)]
    protocols[0].transport.write = broken  # type: ignore[method-assign]  # a transport whose writes fail
    sockets = [_socket(server_send, protocol) for protocol in protocols]

    for socket in sockets:
        socket.offer('{"type":"pong"}')  # raises nothing
    await asyncio.sleep(0)  # nor does writing them out at the end of the round

    for protocol in protocols[1:]:
        assert protocol.transport.written == [text_frame('{"type":"pong"}')]  # type: ignore[attr-defined]


def test_the_kind_counted_per_published_event_is_its_routes() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    message = Message(
        id="m", conversation_id="c", seq=1, sender_id="u", body="hi", client_id=None, reply_to=None, created_at=when
    )
    member = Member(conversation_id="c", user_id="u", role=Role.MEMBER, joined_at=when, last_read_seq=0)
    group = Conversation.start_group(id="c", creator="u", title="t", public=False, now=when)
    events: list[ev.Event] = [
        ev.MessageCreated(message=message),
        ev.MessageUpdated(message=message),
        ev.MessageDeleted(message=message),
        ev.MemberJoined(conversation_id="c", member=member),
        ev.MemberLeft(conversation_id="c", user_id="u", removed_by="u"),
        ev.MemberRoleChanged(conversation_id="c", member=member),
        ev.ConversationUpdated(conversation=group),
        ev.ReadMarkerMoved(conversation_id="c", user_id="u", seq=1),
        ev.UserTyping(conversation_id="c", user_id="u"),
        ev.PresenceChanged(user_id="u", online=True, conversation_ids=("c",)),
        ev.SessionRevoked(user_id="u", session_id="s"),
    ]
    kinds = [kind_of(event) for event in events]

    assert kinds == [route_of(event).kind for event in events]
    assert len(set(kinds)) == 9  # the three without a kind of their own count as "event"
