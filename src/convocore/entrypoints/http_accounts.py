"""HTTP handlers for accounts: register, log in, tokens, people."""

from litestar import Router, get, post
from litestar.di import Provide

from convocore.entrypoints import schemas as s
from convocore.entrypoints.deps import (
    AUTHENTICATED,
    Caller,
    Cursor,
    FromPath,
    JSONBody,
    Limit,
    Query,
    Services,
    provide_principal,
)
from convocore.entrypoints.openapi import WITH_BODY, WITH_TOKEN, problems

AUTH = {"principal": Provide(provide_principal, sync_to_thread=False)}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


@post("/register/", status_code=201, summary="Create an account", responses=problems(WITH_BODY, 409))
async def register(data: JSONBody[s.RegisterIn], container: Services) -> s.UserOut:
    user = await container.register_user().execute(
        username=data.username, password=data.password, display_name=data.display_name
    )
    return s.user_out(user)


@post("/login/", status_code=200, summary="Log in: a new pair of tokens", responses=problems(WITH_BODY, 401))
async def login(data: JSONBody[s.LoginIn], container: Services) -> s.TokensOut:
    issued = await container.log_in().execute(username=data.username, password=data.password)
    return s.tokens_out(issued)


@post("/token/refresh/", status_code=200, summary="Rotate the token pair", responses=problems(WITH_BODY, 401))
async def refresh(data: JSONBody[s.RefreshIn], container: Services) -> s.TokensOut:
    return s.tokens_out(await container.refresh_tokens().execute(refresh_token=data.refresh_token))


@post(
    "/logout/",
    status_code=204,
    dependencies=AUTH,
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="Revoke this session's tokens",
    responses=problems(WITH_TOKEN),
)
async def logout(principal: Caller, container: Services) -> None:
    await container.log_out().execute(principal=principal)


@get(
    "/users/me/",
    dependencies=AUTH,
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="The caller's account",
    responses=problems(WITH_TOKEN),
)
async def me(principal: Caller, container: Services) -> s.UserOut:
    return s.user_out(await container.get_user().execute(user_id=principal.user_id))


@get(
    "/users/",
    dependencies=AUTH,
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="Find people by username prefix",
    responses=problems(WITH_TOKEN, 422),
)
async def search_users(
    principal: Caller, container: Services, q: Query = "", cursor: Cursor = None, limit: Limit = 20
) -> s.UserPage:
    users, after = await container.search_users().execute(prefix=q, after=s.decode_user_cursor(cursor), limit=limit)
    return s.UserPage(items=[s.user_out(u) for u in users], next_cursor=s.encode_cursor(after) if after else None)


@get(
    "/users/{user_id:str}/",
    dependencies=AUTH,
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="One user's public profile",
    responses=problems(WITH_TOKEN, 404),
)
async def get_user(principal: Caller, container: Services, user_id: FromPath[str]) -> s.UserOut:
    return s.user_out(await container.get_user().execute(user_id=user_id))


router = Router(
    path="/api",
    route_handlers=[register, login, refresh, logout, me, search_users, get_user],
    tags=["accounts"],
)
