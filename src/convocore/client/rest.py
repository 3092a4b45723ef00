"""The REST half of the client: one method per endpoint, typed with the server's own wire
Structs, and the session's token pair, refreshed once when a request meets a 401."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from convocore.wire import schemas as s

T = TypeVar("T")


class Problem(msgspec.Struct, kw_only=True):
    """The parts of an RFC 9457 problem document a client branches on."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    field: str | None = None


class ApiError(Exception):
    """An error response: ``kind`` is the problem type's slug (``not-found``, ``conflict``...)."""

    def __init__(self, problem: Problem, *, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.type}: {problem.detail}")
        self.problem, self.status, self.retry_after = problem, problem.status, retry_after
        self.kind = problem.type.rpartition(":")[2]
        self.detail, self.field = problem.detail, problem.field


class SessionEnded(Exception):
    """The session cannot go on: logged out, or the refresh token is no longer accepted."""


def _problem(response: httpx.Response) -> ApiError:
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except msgspec.MsgspecError:
        problem = Problem(status=response.status_code, detail=response.text[:200])
    retry = response.headers.get("retry-after")
    return ApiError(problem, retry_after=float(retry) if retry and retry.isdigit() else None)


class RestClient:
    def __init__(self, base_url: str, *, timeout: float = 30, tokens: s.TokensOut | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self.tokens = tokens
        self._refreshing = asyncio.Lock()

    @property
    def user(self) -> s.UserOut:
        return self._tokens().user

    @property
    def access_token(self) -> str:
        return self._tokens().access_token

    def _tokens(self) -> s.TokensOut:
        if self.tokens is None:
            raise SessionEnded("not logged in")
        return self.tokens

    async def aclose(self) -> None:
        await self.http.aclose()

    # Accounts

    async def register(self, username: str, password: str, *, display_name: str | None = None) -> s.UserOut:
        body = s.RegisterIn(username=username, password=password, display_name=display_name)
        return await self._call("POST", "/api/register/", s.UserOut, body=body, auth=False)

    async def login(self, username: str, password: str) -> s.TokensOut:
        body = s.LoginIn(username=username, password=password)
        self.tokens = await self._call("POST", "/api/login/", s.TokensOut, body=body, auth=False)
        return self.tokens

    async def refresh(self, *, stale: str | None = None) -> s.TokensOut:
        """Rotate the token pair. ``stale``: the access token that failed; if another task has
        already replaced it, nothing is sent (a refresh token works once)."""
        async with self._refreshing:
            current = self._tokens()
            if stale is not None and current.access_token != stale:
                return current
            try:
                body = s.RefreshIn(refresh_token=current.refresh_token)
                self.tokens = await self._call("POST", "/api/token/refresh/", s.TokensOut, body=body, auth=False)
            except ApiError as error:
                if error.status == 401:
                    raise SessionEnded(error.detail) from error
                raise
            return self.tokens

    async def logout(self) -> None:
        await self._request("POST", "/api/logout/")
        self.tokens = None

    async def me(self) -> s.UserOut:
        return await self._call("GET", "/api/users/me/", s.UserOut)

    async def search_users(self, prefix: str = "", *, cursor: str | None = None, limit: int = 20) -> s.UserPage:
        params = {"q": prefix, "cursor": cursor, "limit": limit}
        return await self._call("GET", "/api/users/", s.UserPage, params=params)

    async def get_user(self, user_id: str) -> s.UserOut:
        return await self._call("GET", f"/api/users/{user_id}/", s.UserOut)

    # Conversations

    async def start_direct(self, user_id: str) -> s.ConversationOut:
        return await self._start(s.StartConversationIn(kind="direct", members=[user_id]))

    async def start_group(
        self, title: str, *, members: list[str] | None = None, public: bool = False
    ) -> s.ConversationOut:
        return await self._start(s.StartConversationIn(kind="group", title=title, members=members or [], public=public))

    async def _start(self, body: s.StartConversationIn) -> s.ConversationOut:
        return await self._call("POST", "/api/conversations/", s.ConversationOut, body=body)

    async def conversation(self, conversation_id: str) -> s.ConversationOut:
        return await self._call("GET", f"/api/conversations/{conversation_id}/", s.ConversationOut)

    async def inbox(self, *, cursor: str | None = None, limit: int = 50) -> s.InboxPage:
        return await self._call("GET", "/api/conversations/", s.InboxPage, params={"cursor": cursor, "limit": limit})

    async def inbox_all(self) -> AsyncIterator[s.InboxItemOut]:
        cursor: str | None = None
        while True:
            page = await self.inbox(cursor=cursor, limit=200)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def add_member(
        self, conversation_id: str, user_id: str, *, role: Literal["member", "admin"] = "member"
    ) -> s.MemberOut:
        body = s.AddMemberIn(user_id=user_id, role=role)
        return await self._call("POST", f"/api/conversations/{conversation_id}/members/", s.MemberOut, body=body)

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """Remove someone, or leave when ``user_id`` is your own."""
        await self._request("DELETE", f"/api/conversations/{conversation_id}/members/{user_id}/")

    async def mark_read(self, conversation_id: str, seq: int) -> s.ReadOut:
        path = f"/api/conversations/{conversation_id}/read/"
        return await self._call("POST", path, s.ReadOut, body=s.MarkReadIn(seq=seq))

    async def presence(self, conversation_id: str) -> s.PresenceOut:
        return await self._call("GET", f"/api/conversations/{conversation_id}/presence/", s.PresenceOut)

    # Messages

    async def send(
        self, conversation_id: str, body: str, *, client_id: str | None = None, reply_to: int | None = None
    ) -> s.MessageOut:
        """Post a message. With a ``client_id`` a retry is safe: it returns the stored message."""
        data = s.PostMessageIn(conversation_id=conversation_id, body=body, client_id=client_id, reply_to=reply_to)
        return await self._call("POST", "/api/messages/", s.MessageOut, body=data)

    async def history(
        self, conversation_id: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> s.MessagePage:
        params = {"before": before, "after": after, "limit": limit}
        return await self._call("GET", f"/api/messages/{conversation_id}/", s.MessagePage, params=params)

    async def edit(self, conversation_id: str, seq: int, body: str) -> s.MessageOut:
        path = f"/api/messages/{conversation_id}/{seq}/"
        return await self._call("PATCH", path, s.MessageOut, body=s.EditMessageIn(body=body))

    async def delete(self, conversation_id: str, seq: int) -> s.MessageOut:
        return await self._call("DELETE", f"/api/messages/{conversation_id}/{seq}/", s.MessageOut)

    # Transport

    async def _call(
        self,
        method: str,
        path: str,
        out: type[T],
        *,
        body: msgspec.Struct | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> T:
        response = await self._request(method, path, body=body, params=params, auth=auth)
        return msgspec.json.decode(response.content, type=out)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: msgspec.Struct | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        content = msgspec.json.encode(body) if body is not None else None
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"content-type": "application/json"} if content is not None else {}
        for attempt in (1, 2):
            token = self.access_token if auth else None
            if token is not None:
                headers["authorization"] = f"Bearer {token}"
            response = await self.http.request(method, path, content=content, params=query, headers=headers)
            if response.status_code == 401 and token is not None and attempt == 1:
                await self.refresh(stale=token)  # an expired access token: rotate once, then retry
                continue
            break
        if response.status_code >= 400:
            raise _problem(response)
        return response
