"""The chat page at / in two headless Chromium sessions (the system's Chromium, driven by
Playwright for Python): two people register, start a direct conversation and talk live."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from convocore.client import ConvocoreClient
from tests.conftest import IN_CI
from tests.support.relay import Outage
from tests.support.server import ServerProcess

CHROMIUM = os.environ.get("CONVOCORE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHEAP_HASHING = {"CONVOCORE_ARGON2_TIME_COST": "1", "CONVOCORE_ARGON2_MEMORY_COST": "1024"}


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not at {CHROMIUM} (apt-get install chromium, or set CONVOCORE_TEST_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {"CONVOCORE_RESYNC_LIMIT": "3", **CHEAP_HASHING}  # a short outage is enough for a resync
    process = ServerProcess(env=settings, cwd=tmp_path_factory.mktemp("browser")).start()
    yield process
    process.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    missing = _missing()
    if missing is not None:
        if IN_CI:
            pytest.fail(f"{missing} (CI=true: the browser test must run)")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def registered(browser: Any, base_url: str, username: str, display_name: str) -> Any:
    """A page in a browser session of its own, signed up and live."""
    from playwright.async_api import expect

    page = await (await browser.new_context(viewport={"width": 1100, "height": 700})).new_page()
    await page.goto(base_url)
    await page.click(".tab[data-mode=register]")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=display_name]", display_name)
    await page.fill("input[name=password]", "correct horse")
    await page.click("#auth-submit")
    await expect(page.locator("#status")).to_have_text("online")
    return page


async def test_two_people_chat_live_in_two_browsers(browser: Any, server: ServerProcess) -> None:
    from playwright.async_api import expect

    tag = uuid.uuid4().hex[:6]
    alice = await registered(browser, server.base_url, f"alice_{tag}", f"Alice {tag}")
    bob = await registered(browser, server.base_url, f"bob_{tag}", f"Bob {tag}")

    await alice.click("#new-direct")  # find Bob by the start of his username
    await alice.fill("#people-q", f"bob_{tag[:3]}")
    await alice.locator("#people li", has_text=f"@bob_{tag}").click()
    await expect(alice.locator("#conv-title")).to_have_text(f"Bob {tag}")
    await alice.fill("#draft", "Hello Bob, from Alice's browser")
    await alice.press("#draft", "Enter")

    row = bob.locator("#inbox li", has_text=f"Alice {tag}")  # a new conversation, one unread message
    await expect(row.locator(".unread")).to_have_text("1")
    await expect(row.locator(".preview")).to_have_text("Hello Bob, from Alice's browser")
    await row.click()
    await expect(bob.locator("#messages .bubble")).to_have_text(["Hello Bob, from Alice's browser"])
    await expect(row.locator(".unread")).to_have_count(0)  # read once opened

    await bob.fill("#draft", "Hi Alice")  # typing is announced before anything is sent
    await expect(alice.locator("#typing")).to_have_text(f"Bob {tag} is typing…")
    await bob.press("#draft", "Enter")
    await expect(alice.locator("#messages .bubble")).to_have_text(["Hello Bob, from Alice's browser", "Hi Alice"])
    await expect(alice.locator("#messages li:not(.mine) .bubble")).to_have_text(["Hi Alice"])
    await expect(alice.locator("#typing")).to_have_text("")  # the message ends the typing notice


async def test_the_page_reconnects_and_resumes_after_the_network_drops(browser: Any, server: ServerProcess) -> None:
    from playwright.async_api import expect

    tag = uuid.uuid4().hex[:6]
    outage = Outage(server.port)  # the page reaches the server through a relay that can go down
    await outage.up()
    async with ConvocoreClient(server.base_url) as bob:
        try:
            page = await registered(browser, outage.base_url, f"carol_{tag}", f"Carol {tag}")
            await bob.register(f"bob_{tag}", "correct horse")
            await bob.login(f"bob_{tag}", "correct horse")
            carol = (await bob.search_users(f"carol_{tag}")).items[0]
            conversation = await bob.start_direct(carol.id)
            await bob.send(conversation.id, "before")
            await page.locator("#inbox li").first.click()
            await expect(page.locator("#messages .bubble")).to_have_text(["before"])

            await outage.down()
            await expect(page.locator("#status")).not_to_have_text("online")
            sent = [f"while away {i}" for i in range(5)]  # more than the server replays: a resync
            for body in sent:
                await bob.send(conversation.id, body)
            await outage.up()
            await expect(page.locator("#status")).to_have_text("online", timeout=10_000)
            await bob.send(conversation.id, "after")
            await expect(page.locator("#messages .bubble")).to_have_text(["before", *sent, "after"])
        finally:
            await outage.down()
