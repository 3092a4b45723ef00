"""The README's two embedding stories, run for real."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, asgi
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send

from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster, MemoryUnitOfWorkFactory
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import ListMessages, PostMessage
from convocore.domain.conversations import Kind
from convocore.domain.events import Event, MessageCreated
from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings


async def test_use_cases_run_in_process_on_memory_adapters() -> None:
    uow, clock, ids = MemoryUnitOfWorkFactory(), SystemClock(), UuidGenerator()
    broadcaster = InProcessBroadcaster()
    events: list[Event] = []
    broadcaster.add_listener(events.append)
    register = RegisterUser(uow=uow, hasher=Argon2PasswordHasher(time_cost=1, memory_cost=1024), ids=ids, clock=clock)
    alice = await register.execute(username="alice", password="correct horse")
    bob = await register.execute(username="bob", password="battery staple")
    start = StartConversation(uow=uow, broadcaster=broadcaster, ids=ids, clock=clock)
    detail, _ = await start.execute(user_id=alice.id, kind=Kind.DIRECT, members=[bob.id])
    post = PostMessage(uow=uow, broadcaster=broadcaster, ids=ids, clock=clock)
    await post.execute(user_id=alice.id, conversation_id=detail.conversation.id, body="hi bob")
    messages, _ = await ListMessages(uow=uow).execute(user_id=bob.id, conversation_id=detail.conversation.id)
    assert [m.body for m in messages] == ["hi bob"]
    assert [e.message.body for e in events if isinstance(e, MessageCreated)] == ["hi bob"]


async def test_the_app_mounts_inside_another_asgi_app(tmp_path: Path) -> None:
    chat = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/chat.db", argon2_time_cost=1, argon2_memory_cost=1024)
    )

    @asgi("/chat", is_mount=True, copy_scope=True)
    async def chat_mount(scope: Scope, receive: Receive, send: Send) -> None:
        await chat(scope, receive, send)

    @asynccontextmanager
    async def run_chat(_: Litestar) -> AsyncIterator[None]:
        async with chat.lifespan():
            yield

    host = Litestar(route_handlers=[chat_mount], lifespan=[run_chat])
    async with AsyncTestClient(host) as client:
        r = await client.post("/chat/api/register/", json={"username": "mounted", "password": "password1"})
        assert r.status_code == 201, r.text
        r = await client.post("/chat/api/login/", json={"username": "mounted", "password": "password1"})
        token = r.json()["access_token"]
        me = await client.get("/chat/api/users/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "mounted"
    assert (tmp_path / "chat.db").exists()
