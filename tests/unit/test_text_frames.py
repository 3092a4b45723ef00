"""The frame bytes the socket-write accelerator builds once per event are exactly what the
websockets library puts on the wire for the same text."""

import pytest
from websockets.frames import Frame, Opcode

from convocore.entrypoints.uvicorn_sockets import text_frame


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
