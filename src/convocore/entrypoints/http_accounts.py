"""HTTP handlers for accounts: register, log in, tokens, people."""

from litestar import Router, get, post

from convocore.application.accounts import GetUser, LogIn, LogOut, RefreshTokens, RegisterUser, SearchUsers
from convocore.entrypoints import present as p
from convocore.entrypoints.deps import (
    ANYONE,
    AUTHENTICATED,
    SECURED,
    Caller,
    Cursor,
    JSONBody,
    Limit,
    PathId,
    Query,
    Use,
)
from convocore.entrypoints.openapi import WITH_BODY, WITH_PATH, WITH_TOKEN, problems
from convocore.wire import schemas as s


@post("/register/", status_code=201, middleware=ANYONE, summary="Create an account", responses=problems(WITH_BODY, 409))
async def register(data: JSONBody[s.RegisterIn], register_user: Use[RegisterUser]) -> s.UserOut:
    user = await register_user.execute(username=data.username, password=data.password, display_name=data.display_name)
    return p.user_out(user)


@post(
    "/login/",
    status_code=200,
    middleware=ANYONE,
    summary="Log in: a new pair of tokens",
    responses=problems(WITH_BODY, 401),
)
async def login(data: JSONBody[s.LoginIn], log_in: Use[LogIn]) -> s.TokensOut:
    return p.tokens_out(await log_in.execute(username=data.username, password=data.password))


@post(
    "/token/refresh/",
    status_code=200,
    middleware=ANYONE,
    summary="Rotate the token pair",
    responses=problems(WITH_BODY, 401),
)
async def refresh(data: JSONBody[s.RefreshIn], refresh_tokens: Use[RefreshTokens]) -> s.TokensOut:
    return p.tokens_out(await refresh_tokens.execute(refresh_token=data.refresh_token))


@post(
    "/logout/",
    status_code=204,
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="Revoke this session's tokens",
    responses=problems(WITH_TOKEN),
)
async def logout(request: Caller, log_out: Use[LogOut]) -> None:
    await log_out.execute(principal=request.user)


@get(
    "/users/me/",
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="The caller's account",
    responses=problems(WITH_TOKEN),
)
async def me(request: Caller, get_user: Use[GetUser]) -> s.UserOut:
    return p.user_out(await get_user.execute(user_id=request.user.user_id))


@get(
    "/users/",
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="Find people by username prefix",
    responses=problems(WITH_TOKEN, 422),
)
async def search_users(
    search_users: Use[SearchUsers], q: Query = "", cursor: Cursor = None, limit: Limit = 20
) -> s.UserPage:
    users, after = await search_users.execute(prefix=q, after=p.decode_user_cursor(cursor), limit=limit)
    return s.UserPage(items=[p.user_out(u) for u in users], next_cursor=p.encode_cursor(after) if after else None)


@get(
    "/users/{user_id:str}/",
    middleware=AUTHENTICATED,
    security=SECURED,
    summary="One user's public profile",
    responses=problems(WITH_TOKEN, WITH_PATH, 404),
)
async def get_user(get_user: Use[GetUser], user_id: PathId) -> s.UserOut:
    return p.user_out(await get_user.execute(user_id=user_id))


router = Router(
    path="/api",
    route_handlers=[register, login, refresh, logout, me, search_users, get_user],
    tags=["accounts"],
)
