"""The inbox and flag that stand in for uvicorn's asyncio.Queue and Event in the socket protocol
``convocore serve`` runs (entrypoints/wsserver.py): the same behaviour where uvicorn uses them."""

import asyncio

from convocore.entrypoints.wsserver import _Flag, _Inbox


async def test_the_inbox_hands_messages_out_in_order_and_waits_when_empty() -> None:
    inbox = _Inbox()
    inbox.put_nowait("first")
    inbox.put_nowait("second")
    assert not inbox.empty()
    assert [await inbox.get(), await inbox.get()] == ["first", "second"]
    assert inbox.empty()

    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait("third")
    assert await asyncio.wait_for(waiting, 1) == "third"


async def test_a_cancelled_reader_leaves_the_inbox_usable() -> None:
    inbox = _Inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    inbox.put_nowait("after")
    assert await asyncio.wait_for(inbox.get(), 1) == "after"


async def test_a_set_flag_is_waited_on_without_suspending() -> None:
    flag = _Flag()
    steps = flag.wait().__await__()
    try:
        steps.send(None)
        raise AssertionError("wait() on a set flag suspended")
    except StopIteration as done:
        assert done.value is True


async def test_a_cleared_flag_holds_every_waiter_until_set() -> None:
    flag = _Flag()
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)

    flag.set()

    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert flag.is_set()
