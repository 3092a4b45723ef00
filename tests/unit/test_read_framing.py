"""Where request heads and bodies end, as ReadDeadlines sees them, however the bytes are split."""

import pytest

from convocore.entrypoints.read_deadlines import Framing

POST = b"POST /api/messages/ HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = (
    b"POST /api/login/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


def kinds(events: list[tuple[str, int]]) -> list[str]:
    return [kind for kind, _ in events]


def fed(stream: bytes, size: int) -> tuple[list[tuple[str, int]], Framing]:
    framing = Framing()
    events: list[tuple[str, int]] = []
    for i in range(0, len(stream), size):
        events += framing.feed(stream[i : i + size])
    return events, framing


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_pipelined_requests_split_anywhere_end_where_they_end(size: int) -> None:
    events, framing = fed(POST + GET + CHUNKED + GET, size)
    assert kinds(events).count("done") == 4
    assert kinds(events).count("head") == 2  # the two with bodies
    assert sum(n for kind, n in events if kind == "body") == 11 + (5 + 2 + 6 + 2)
    assert framing.in_head and framing.head_bytes == 0  # between requests


def test_a_head_in_progress_is_counted_until_it_ends() -> None:
    framing = Framing()
    assert framing.feed(b"GET / HTTP/1.1\r\nHo") == []
    assert framing.in_head and framing.head_bytes == 18
    assert framing.feed(b"st: x\r\n\r\n") == [("done", 0)]
    assert framing.head_bytes == 0


def test_a_body_not_yet_complete_is_not_done() -> None:
    framing = Framing()
    assert kinds(framing.feed(POST[:-3])) == ["head", "body"]
    assert not framing.in_head
    assert framing.feed(b"rld") == [("body", 3), ("done", 0)]


@pytest.mark.parametrize(
    "stream",
    [
        b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /" + b"a" * (70 * 1024),
    ],
)
def test_what_cannot_be_framed_is_left_to_the_server_and_no_longer_watched(stream: bytes) -> None:
    framing = Framing()
    framing.feed(stream)
    assert framing.lost
    assert framing.feed(GET) == []
