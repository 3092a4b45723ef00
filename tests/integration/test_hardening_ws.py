"""What an outside review found on the sockets, against a real `convocore serve` (its SQLite file,
or CONVOCORE_TEST_DATABASE's storage): ids and seqs out of range close with 4400 or get an
error frame (never 4500), a since past the end counts as the end, resumes are budgeted like
sends, a person's sockets are capped, and no token reaches the log at any level."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.support.remote import Remote, assert_closed_with, next_frame, ready
from tests.support.server import ServerProcess
from tests.support.storage import storage_for

SEQ_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("hardening")
    with storage_for(default="sqlite", tmp=tmp) as storage:
        env = {"CONVOCORE_WS_MAX_SOCKETS_PER_USER": "3", "CONVOCORE_SEND_LIMIT": "4"}
        process = ServerProcess(*storage.server_args, "--log-level", "debug", env=env, cwd=tmp).start()
        yield process
        process.stop()


async def test_a_conversation_id_no_storage_keeps_closes_with_4400(remote: Remote) -> None:
    person = await remote.account()
    for bad in ("a%00b", "%01", "x" * 65):
        async with remote.socket(bad, person.token) as ws:
            await assert_closed_with(ws, 4400)


@pytest.mark.parametrize("since", [str(SEQ_MAX + 1), str(2**70), "-1", "1e3"])
async def test_a_since_out_of_range_closes_with_4400(remote: Remote, since: str) -> None:
    person = await remote.account()
    cid = await remote.group(person)
    url = f"{remote.ws_url}/ws/chat/{cid}/?token={person.token}&since={since}"
    async with websockets.connect(url) as ws:
        await assert_closed_with(ws, 4400)


async def test_a_since_past_the_last_seq_counts_as_the_last(remote: Remote) -> None:
    person = await remote.account()
    cid = await remote.group(person)
    await remote.send(person, cid, "one")
    url = f"{remote.ws_url}/ws/chat/{cid}/?token={person.token}&since={SEQ_MAX}"
    async with websockets.connect(url) as ws:
        await ready(ws)
        await remote.send(person, cid, "two")
        frame = await next_frame(ws)
        assert frame["type"] == "message.created" and frame["message"]["seq"] == 2  # no resync first


async def test_a_resume_out_of_range_is_an_error_frame_and_past_the_end_counts_as_the_end(remote: Remote) -> None:
    person = await remote.account()
    cid = await remote.group(person)
    await remote.send(person, cid, "before")
    async with remote.socket(cid, person.token) as ws:
        await ready(ws)
        await ws.send(json.dumps({"type": "resume", "since": {cid: SEQ_MAX + 1}}))
        error = await next_frame(ws)
        assert error["type"] == "error" and error["code"] == "validation-error", error
        await ws.send(json.dumps({"type": "resume", "since": {cid: SEQ_MAX}}))
        # A message posted while the resume is read may count as seen (the since was past it);
        # the ones after must arrive, with no resync and no replay of the one before.
        for n in range(1, 4):
            await remote.send(person, cid, f"after {n}")
            try:
                frame = await next_frame(ws, timeout=2)
            except TimeoutError:
                continue
            assert frame["type"] == "message.created" and frame["message"]["seq"] > 1, frame
            break
        else:
            pytest.fail("nothing arrived after a resume past the end: it was taken as a seq to wait for")


async def test_resumes_are_budgeted_like_sends(remote: Remote) -> None:
    person = await remote.account()  # the server allows 4 sends (and so 4 resumes) per 10 s
    cid = await remote.group(person)
    async with remote.socket(cid, person.token) as ws:
        await ready(ws)
        for _ in range(4):
            await ws.send(json.dumps({"type": "resume", "since": {cid: 0}}))
        await ws.send(json.dumps({"type": "resume", "since": {cid: 0}}))
        error = await next_frame(ws)
        assert error["type"] == "error" and error["code"] == "rate-limited", error
        assert error["retry_after"] >= 1


async def test_a_persons_sockets_are_capped(remote: Remote) -> None:
    person = await remote.account()
    cid = await remote.group(person)
    async with remote.socket(cid, person.token) as a, remote.socket(cid, person.token) as b:
        async with remote.socket(cid, person.token) as c:
            for ws in (a, b, c):
                await ready(ws)
            async with remote.socket(cid, person.token) as too_many:
                await assert_closed_with(too_many, 4429)
        async with remote.socket(cid, person.token) as again:  # one closed: room for another
            await ready(again)


async def test_no_token_reaches_the_log_at_debug_level(remote: Remote, server: ServerProcess) -> None:
    person = await remote.account()
    cid = await remote.group(person)
    async with remote.socket(cid, person.token) as ws:
        await ready(ws)
    headers = {"Authorization": f"Bearer {person.token}"}
    async with websockets.connect(f"{remote.ws_url}/ws/?token={person.token}", additional_headers=headers) as ws:
        await ready(ws)
    await remote.http.post("/api/token/refresh/", json={"refresh_token": person.refresh_token})
    assert server.log_path is not None
    log = Path(server.log_path).read_text()
    assert "WebSocket /ws/" in log  # uvicorn's access line for the socket is there, at debug level
    assert person.token not in log
    assert person.refresh_token not in log
