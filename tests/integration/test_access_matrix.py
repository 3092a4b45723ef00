"""Who may do what: every HTTP endpoint and every socket frame type, against every kind of
caller, each cell the documented answer (docs/api.md, docs/realtime.md).

The callers, for a private group `g` owned by `owner` with admins `admin` and `co_admin` and
plain members `member` and `peer`:

- anonymous: no token at all;
- outsider: signed in, not in `g` (and owns a group `x` of their own);
- member, admin, owner: their role in `g`;
- removed: was a member of `g` (and wrote in it), then the owner removed them;
- logged_out, expired: the *owner's* own tokens, one from a session that logged out, one whose
  access lifetime ran out: a revoked or expired token is refused even to the most powerful user.

Every cell starts from a fresh `g`. Refused requests (4xx) are also checked to have changed
nothing in `g`. The outsider and removed columns are the IDOR probes: ids of other people's
conversation, messages and members in every path and body field.
"""

import itertools
import json
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dependency_injector import providers
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from convocore.entrypoints.app import build_container, create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS

ROLES = ("anonymous", "outsider", "member", "admin", "owner", "removed", "logged_out", "expired")
ACCESS_TTL_S = 3600
PASSWORD = "correct horse"
NO_TOKEN = "send Authorization: Bearer <access token>"
DEAD_TOKEN = "the access token is expired or revoked"
_names = itertools.count(1)


class ShiftedClock:
    """The wall clock, moved by `offset` while a test says so: tokens issued in the past are
    expired now, with nothing slept."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Party:
    id: str
    username: str
    token: str
    refresh: str


@dataclass
class Caller:
    role: str
    id: str  # the owner's, for anonymous
    token: str | None
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class Scene:
    """One cell's world: a fresh group `g`, in which the owner, `peer` and the caller (if a
    member, or the removed member before the removal) each wrote a message."""

    g: str
    caller: Caller
    values: dict[str, str]  # what paths, bodies and frames name: {g}, {me}, {peer}, {my_seq}, ...


class Stage:
    def __init__(self, client: TestClient[Any], clock: ShiftedClock) -> None:
        self.client, self.clock = client, clock
        names = ("owner", "admin", "co_admin", "member", "peer", "removed", "outsider", "newbie")
        self.people = {name: self._register(name) for name in names}

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers=headers, json=body)

    def ok(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        r = self.call(method, path, token, body)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None

    def _register(self, name: str) -> Party:
        username = f"{name}{next(_names)}"
        self.ok("POST", "/api/register/", body={"username": username, "password": PASSWORD})
        return self._log_in(username)

    def _log_in(self, username: str) -> Party:
        body = self.ok("POST", "/api/login/", body={"username": username, "password": PASSWORD})
        return Party(body["user"]["id"], username, body["access_token"], body["refresh_token"])

    def fresh_session(self, name: str) -> Party:
        return self._log_in(self.people[name].username)

    def caller(self, role: str) -> Caller:
        owner = self.people["owner"].id
        if role == "anonymous":
            return Caller(role, owner, None, "not-a-refresh-token")
        if role == "logged_out":
            session = self.fresh_session("owner")
            self.ok("POST", "/api/logout/", session.token)
            return Caller(role, owner, session.token, session.refresh)
        if role == "expired":
            self.clock.offset = -timedelta(seconds=ACCESS_TTL_S + 60)
            try:
                session = self.fresh_session("owner")
            finally:
                self.clock.offset = timedelta()
            return Caller(role, owner, session.token, session.refresh)
        session = self.fresh_session(role)
        return Caller(role, session.id, session.token, session.refresh)

    def scene(self, role: str, *, with_x: bool = False) -> Scene:
        """A fresh `g`, the caller, and with `with_x` a group `x` of the caller's own (the
        owner's, for callers with no usable token)."""
        p = {name: party for name, party in self.people.items()}
        members = [p[n].id for n in ("admin", "co_admin", "member", "peer", "removed")]
        g = self.ok(
            "POST", "/api/conversations/", p["owner"].token, {"kind": "group", "title": "g", "members": members}
        )
        g_id = g["id"]
        for name in ("admin", "co_admin"):
            self.ok("PATCH", f"/api/conversations/{g_id}/members/{p[name].id}/", p["owner"].token, {"role": "admin"})
        seqs = {}
        for name in ("owner", "peer", *([role] if role in ("admin", "member", "removed") else [])):
            body = {"conversation_id": g_id, "body": f"by {name}"}
            seqs[name] = self.ok("POST", "/api/messages/", p[name].token, body)["seq"]
        self.ok("DELETE", f"/api/conversations/{g_id}/members/{p['removed'].id}/", p["owner"].token)
        caller = self.caller(role)
        values = {
            "g": g_id,
            "me": caller.id,
            "my_seq": str(seqs.get(role, seqs["owner"])),
            "peer_seq": str(seqs["peer"]),
            "owner_seq": str(seqs["owner"]),
            "refresh": caller.refresh,
            "new_name": f"new{next(_names)}",
            **{name: party.id for name, party in p.items()},
        }
        if with_x:
            own = caller.token if role in ("outsider", "member", "admin", "owner", "removed") else p["owner"].token
            values["x"] = self.ok("POST", "/api/conversations/", own, {"kind": "group", "title": "x"})["id"]
        return Scene(g_id, caller, values)

    def snapshot(self, g: str) -> tuple[Any, Any]:
        """The group as its owner sees it: what a refused request must not change."""
        token = self.people["owner"].token
        return self.ok("GET", f"/api/conversations/{g}/", token), self.ok("GET", f"/api/messages/{g}/", token)


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    settings = Settings(memory=True, access_ttl_s=ACCESS_TTL_S, typing_burst=1000, **FAST_HASHING, **GENEROUS_LIMITS)
    clock = ShiftedClock()
    container = build_container(settings)
    container.clock.override(providers.Object(clock))
    with TestClient(create_app(settings, container=container)) as client:
        yield Stage(client, clock)


# HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str  # {g}, {x}, {me}, {peer}, {my_seq}, ... from Scene.values
    expect: str  # one status per role, in ROLES order
    body: dict[str, Any] | None = None
    setup: Callable[[Stage, Scene], None] | None = None
    bearer: bool = True  # the endpoint takes an access token

    def statuses(self) -> dict[str, int]:
        return dict(zip(ROLES, map(int, self.expect.split()), strict=True))


def _public(stage: Stage, scene: Scene) -> None:
    stage.ok("PATCH", f"/api/conversations/{scene.g}/", stage.people["owner"].token, {"public": True})


ANYONE, SIGNED_IN = "201 201 201 201 201 201 201 201", "401 200 200 200 200 200 401 401"
#                       anonymous outsider member admin owner removed logged_out expired
HTTP_ROWS = [
    Row("register", "POST", "/api/register/", ANYONE, {"username": "{new_name}", "password": PASSWORD}, bearer=False),
    Row("log in", "POST", "/api/login/", "200 200 200 200 200 200 200 200", {"username": "{new_name}", "password": PASSWORD},
        setup=lambda st, sc: st.ok("POST", "/api/register/", body={"username": sc.values["new_name"], "password": PASSWORD}),
        bearer=False),
    Row("refresh the caller's own pair", "POST", "/api/token/refresh/", "401 200 200 200 200 200 401 200",
        {"refresh_token": "{refresh}"}, bearer=False),
    Row("log out", "POST", "/api/logout/", "401 204 204 204 204 204 401 401"),
    Row("who am I", "GET", "/api/users/me/", SIGNED_IN),
    Row("search people", "GET", "/api/users/?q=m", SIGNED_IN),
    Row("someone's profile", "GET", "/api/users/{member}/", SIGNED_IN),
    Row("start a group", "POST", "/api/conversations/", "401 201 201 201 201 201 401 401", {"kind": "group", "title": "t"}),
    Row("start a direct conversation", "POST", "/api/conversations/", "401 201 201 201 201 201 401 401",
        {"kind": "direct", "members": ["{newbie}"]}),
    Row("inbox", "GET", "/api/conversations/", SIGNED_IN),
    Row("discover public groups", "GET", "/api/conversations/public/", SIGNED_IN),
    Row("read the group", "GET", "/api/conversations/{g}/", "401 404 200 200 200 404 401 401"),
    Row("rename the group", "PATCH", "/api/conversations/{g}/", "401 404 403 200 200 404 401 401", {"title": "renamed"}),
    Row("make it public", "PATCH", "/api/conversations/{g}/", "401 404 403 200 200 404 401 401", {"public": True}),
    Row("add a member", "POST", "/api/conversations/{g}/members/", "401 404 403 201 201 404 401 401",
        {"user_id": "{newbie}"}),
    Row("add an admin", "POST", "/api/conversations/{g}/members/", "401 404 403 403 201 404 401 401",
        {"user_id": "{newbie}", "role": "admin"}),
    Row("add someone already in", "POST", "/api/conversations/{g}/members/", "401 404 403 200 200 404 401 401",
        {"user_id": "{peer}"}),
    Row("add yourself", "POST", "/api/conversations/{g}/members/", "401 404 403 200 200 404 401 401",
        {"user_id": "{me}"}),
    Row("remove a member", "DELETE", "/api/conversations/{g}/members/{peer}/", "401 404 403 204 204 404 401 401"),
    Row("remove an admin", "DELETE", "/api/conversations/{g}/members/{co_admin}/", "401 404 403 403 204 404 401 401"),
    Row("remove the owner (the owner: leave)", "DELETE", "/api/conversations/{g}/members/{owner}/",
        "401 404 403 403 204 404 401 401"),
    Row("leave", "DELETE", "/api/conversations/{g}/members/{me}/", "401 404 204 204 204 404 401 401"),
    Row("make a member admin", "PATCH", "/api/conversations/{g}/members/{peer}/", "401 404 403 403 200 404 401 401",
        {"role": "admin"}),
    Row("hand over ownership", "PATCH", "/api/conversations/{g}/members/{peer}/", "401 404 403 403 200 404 401 401",
        {"role": "owner"}),
    Row("change the removed member's role", "PATCH", "/api/conversations/{g}/members/{removed}/",
        "401 404 404 404 404 404 401 401", {"role": "admin"}),  # no such member comes before "owner only"
    Row("join the private group", "POST", "/api/conversations/{g}/join/", "401 404 200 200 200 404 401 401"),
    Row("join it once public", "POST", "/api/conversations/{g}/join/", "401 201 200 200 200 201 401 401", setup=_public),
    Row("mark read", "POST", "/api/conversations/{g}/read/", "401 404 200 200 200 404 401 401", {"seq": 1}),
    Row("who is online", "GET", "/api/conversations/{g}/presence/", "401 404 200 200 200 404 401 401"),
    Row("send a message", "POST", "/api/messages/", "401 404 201 201 201 404 401 401",
        {"conversation_id": "{g}", "body": "hello"}),
    Row("read the history", "GET", "/api/messages/{g}/?after=0", "401 404 200 200 200 404 401 401"),
    Row("edit your own message", "PATCH", "/api/messages/{g}/{my_seq}/", "401 404 200 200 200 404 401 401",
        {"body": "edited"}),
    Row("edit a member's message", "PATCH", "/api/messages/{g}/{peer_seq}/", "401 404 403 403 403 404 401 401",
        {"body": "edited"}),
    Row("delete your own message", "DELETE", "/api/messages/{g}/{my_seq}/", "401 404 200 200 200 404 401 401"),
    Row("delete a member's message", "DELETE", "/api/messages/{g}/{peer_seq}/", "401 404 403 200 200 404 401 401"),
    Row("delete the owner's message", "DELETE", "/api/messages/{g}/{owner_seq}/", "401 404 403 200 200 404 401 401"),
    # Through the caller's own group x, at people of g who are not in x: nobody is reached.
    Row("remove g's member through x", "DELETE", "/api/conversations/{x}/members/{peer}/",
        "401 404 404 404 404 404 401 401"),
    Row("change g's member's role through x", "PATCH", "/api/conversations/{x}/members/{peer}/",
        "401 404 404 404 404 404 401 401", {"role": "admin"}),
]  # fmt: skip


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _answer(stage: Stage, row: Row, role: str) -> tuple[int, dict[str, Any]]:
    scene = stage.scene(role, with_x="{x}" in row.path)
    if row.setup is not None:
        row.setup(stage, scene)
    refused = row.statuses()[role] >= 400
    before = stage.snapshot(scene.g) if refused else None
    r = stage.client.request(
        row.method, _fill(row.path, scene.values), headers=scene.caller.headers, json=_fill(row.body, scene.values)
    )
    body = r.json() if r.content else {}
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json"), r.text
    if refused:
        assert stage.snapshot(scene.g) == before, f"{row.name} as {role}: refused with {r.status_code}, yet g changed"
    return r.status_code, body


@pytest.mark.parametrize("row", HTTP_ROWS, ids=lambda row: f"{row.method} {row.path} ({row.name})")
def test_http(stage: Stage, row: Row) -> None:
    answers = {role: _answer(stage, row, role) for role in ROLES}
    assert {role: status for role, (status, _) in answers.items()} == row.statuses()
    for role, (status, body) in answers.items():
        if status == 401 and row.bearer:  # why, in the words of docs/api.md
            assert body["detail"] == (NO_TOKEN if role == "anonymous" else DEAD_TOKEN), (role, body)
        if status == 404 and role in ("outsider", "removed") and "{g}" in row.path + json.dumps(row.body):
            assert body["detail"] == "no such conversation", (role, body)  # indistinguishable from no g at all


def test_listings_show_g_to_its_members_only_until_it_is_public(stage: Stage) -> None:
    scene = stage.scene("member")
    roles = ("outsider", "member", "admin", "owner", "removed")
    callers = {role: stage.caller(role) for role in roles}

    def listed() -> dict[str, tuple[bool, bool]]:
        seen = {}
        for role, caller in callers.items():
            inbox = stage.ok("GET", "/api/conversations/?limit=200", caller.token)["items"]
            public = stage.ok("GET", "/api/conversations/public/?limit=200", caller.token)["items"]
            seen[role] = (scene.g in {c["id"] for c in inbox}, scene.g in {c["id"] for c in public})
        return seen

    members_only = {"outsider": (False, False), "removed": (False, False)} | {
        role: (True, False) for role in ("member", "admin", "owner")
    }
    assert listed() == members_only
    _, history = stage.snapshot(scene.g)
    secrets = {scene.g, *(m["id"] for m in history["items"])}
    for role in ("outsider", "removed"):  # nothing of g anywhere in what they can list
        for path in ("/api/conversations/?limit=200", "/api/conversations/public/?limit=200", "/api/users/?limit=200"):
            text = stage.call("GET", path, callers[role].token).text
            assert [s for s in secrets if s in text] == [], (role, path)
    stage.ok("PATCH", f"/api/conversations/{scene.g}/", stage.people["owner"].token, {"public": True})
    assert listed() == {role: (inbox, True) for role, (inbox, _) in members_only.items()}


# WebSocket -------------------------------------------------------------------------------------

SENTINEL = json.dumps({"type": "ping", "sentinel": 1})


@dataclass(frozen=True)
class FrameRow:
    name: str
    socket: str  # "conversation" (on g) or "user"
    frame: dict[str, Any] | None  # None: only connect
    expect: str  # per role: "open", a close code, or the answer (frame types, and error codes as error:CODE)

    def answers(self) -> dict[str, str]:
        return dict(zip(ROLES, self.expect.split(), strict=True))


#                                    anonymous outsider member admin owner removed logged_out expired
WS_ROWS = [
    FrameRow("connect", "conversation", None, "4401 4403 open open open 4403 4401 4401"),
    FrameRow("connect", "user", None, "4401 open open open open open 4401 4401"),
    FrameRow("ping", "conversation", {"type": "ping"}, "4401 4403 pong pong pong 4403 4401 4401"),
    FrameRow("message.send", "conversation", {"type": "message.send", "body": "hi", "client_id": "c"},
             "4401 4403 ack,message.created ack,message.created ack,message.created 4403 4401 4401"),
    FrameRow("message.send naming g", "conversation", {"type": "message.send", "body": "hi", "conversation_id": "{g}"},
             "4401 4403 ack,message.created ack,message.created ack,message.created 4403 4401 4401"),
    FrameRow("message.send naming x", "conversation", {"type": "message.send", "body": "hi", "conversation_id": "{x}"},
             "4401 4403 error:validation-error error:validation-error error:validation-error 4403 4401 4401"),
    FrameRow("typing", "conversation", {"type": "typing"}, "4401 4403 typing typing typing 4403 4401 4401"),
    FrameRow("resume", "conversation", {"type": "resume", "since": {"{g}": 0}},
             "4401 4403 message.created message.created message.created 4403 4401 4401"),
    FrameRow("ping", "user", {"type": "ping"}, "4401 pong pong pong pong pong 4401 4401"),
    FrameRow("message.send to g", "user", {"type": "message.send", "body": "hi", "conversation_id": "{g}"},
             "4401 error:not-found ack,message.created ack,message.created ack,message.created error:not-found 4401 4401"),
    FrameRow("typing in g", "user", {"type": "typing", "conversation_id": "{g}"},
             "4401 error:not-found typing typing typing error:not-found 4401 4401"),
    FrameRow("resume g", "user", {"type": "resume", "since": {"{g}": 0}},
             "4401 error:not-found message.created message.created message.created error:not-found 4401 4401"),
]  # fmt: skip


def _socket_answer(ws: WebSocketTestSession, frame: dict[str, Any] | None, expected: str) -> str:
    """What the socket said to `frame`: the frame types received (errors as error:CODE),
    presence notices aside, up to the answer to SENTINEL, and then (since replays, acks and the
    broadcast of a send may come in any order) until what is expected has come, for a while."""
    if frame is not None:
        ws.send_text(json.dumps(frame))
    ws.send_text(SENTINEL)
    seen: set[str] = set()
    wanted = set() if frame is None or expected.isdigit() else set(expected.split(","))
    answered, deadline = False, time.monotonic() + 5
    while not answered or not wanted <= seen:
        try:
            got = ws.receive_json(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if got["type"] == "error" and got["field"] == "sentinel":
            answered = True
        elif got["type"] != "presence":
            seen.add(f"error:{got['code']}" if got["type"] == "error" else got["type"])
    assert answered, f"no answer to a ping after {frame}"
    return ",".join(sorted(seen)) if frame is not None else "open"


def _ws_answer(stage: Stage, row: FrameRow, role: str) -> str:
    scene = stage.scene(role, with_x="{x}" in json.dumps(row.frame))
    frame = _fill(row.frame, scene.values)
    if frame is not None and "since" in frame:
        frame["since"] = {_fill(k, scene.values): v for k, v in frame["since"].items()}
    path = f"/ws/chat/{scene.g}/" if row.socket == "conversation" else "/ws/"
    query = f"?token={scene.caller.token}" if scene.caller.token else ""
    try:
        with stage.client.websocket_connect(path + query) as ws:
            return _socket_answer(ws, frame, row.answers()[role])
    except WebSocketDisconnect as closed:
        return str(closed.code)


@pytest.mark.parametrize("row", WS_ROWS, ids=lambda row: f"{row.socket} socket: {row.name}")
def test_websocket(stage: Stage, row: FrameRow) -> None:
    assert {role: _ws_answer(stage, row, role) for role in ROLES} == row.answers()
