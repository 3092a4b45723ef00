"""Property-based fuzzing of every HTTP operation against the app's own OpenAPI document.

Schemathesis reads /schema/openapi.json from the real Litestar app (in-process, on memory storage,
or CONVOCORE_TEST_DATABASE's: on PostgreSQL, whose text holds no NUL, the fuzzing checks that too)
and, for each operation, sends generated requests, valid and invalid, then checks that no answer
is a 5xx and that every answer conforms to the document: a documented status, the documented
content type and headers, and a body matching the documented schema. Once with a valid token
(paths and bodies often point at real conversations, users and messages), once without one.
"""

import atexit
import contextlib
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi

from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings
from tests.integration.api.conftest import FAST_HASHING, GENEROUS_LIMITS
from tests.support.storage import CHOSEN, fresh_postgres_database


def _storage() -> dict[str, Any]:
    if CHOSEN != "postgres":
        return {"memory": True}
    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    return {"database_url": stack.enter_context(fresh_postgres_database()), "migrate": True}


APP = create_app(Settings(**_storage(), **FAST_HASHING, **GENEROUS_LIMITS))
WITH_TOKEN = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)
WITHOUT_TOKEN = schemathesis.openapi.from_asgi("/schema/openapi.json", APP)
EXAMPLES = int(os.environ.get("CONVOCORE_FUZZ_EXAMPLES", "30"))  # per operation; raise it for a deeper run
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("CONVOCORE_FUZZ_RANDOM"),  # by default the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
PASSWORD = "correct horse"
# A request the document allows may still break a rule it cannot state (a cursor this server
# never issued, a body of only spaces, a user id that does not exist): that is a documented 422,
# not a failure. Every other built-in check runs, among them "invalid data is rejected".
NOT_CHECKED = [positive_data_acceptance]


@dataclass(frozen=True)
class World:
    """What the fuzzer (the token's owner) can point at: its own and other people's things."""

    token: str
    users: tuple[str, ...]
    conversations: tuple[str, ...]


def _call(method: str, path: str, token: str | None = None, json: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with asgi.get_client(APP) as client:
        response = client.request(method, path, json=json, headers=headers)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _log_in(username: str) -> tuple[str, str]:
    body = _call("POST", "/api/login/", json={"username": username, "password": PASSWORD})
    return body["access_token"], body["user"]["id"]


def _person(username: str) -> tuple[str, str]:
    _call("POST", "/api/register/", json={"username": username, "password": PASSWORD})
    return _log_in(username)


@cache
def world() -> World:
    me, me_id = _person("fuzzer")
    alice, alice_id = _person("alice")
    _, bob_id = _person("bob")
    mine = _call("POST", "/api/conversations/", me, {"kind": "group", "title": "mine", "members": [alice_id, bob_id]})
    theirs = _call("POST", "/api/conversations/", alice, {"kind": "group", "title": "theirs", "members": [me_id]})
    secret = _call("POST", "/api/conversations/", alice, {"kind": "group", "title": "secret", "members": [bob_id]})
    public = _call("POST", "/api/conversations/", alice, {"kind": "group", "title": "open", "public": True})
    direct = _call("POST", "/api/conversations/", me, {"kind": "direct", "members": [bob_id]})
    for cid, token in [(mine["id"], me), (mine["id"], alice), (theirs["id"], alice), (secret["id"], alice)]:
        for n in range(3):
            _call("POST", "/api/messages/", token, {"conversation_id": cid, "body": f"message {n}"})
    _call("POST", "/api/messages/", me, {"conversation_id": direct["id"], "body": "hi bob"})
    conversations = (mine["id"], theirs["id"], secret["id"], public["id"], direct["id"])
    return World(token=me, users=(me_id, alice_id, bob_id), conversations=conversations)


def _known(name: str) -> tuple[Any, ...]:
    w = world()
    alice, bob = w.users[1:]
    return {
        "conversation_id": w.conversations,
        "user_id": w.users,
        "members": ([alice], [bob], [alice, bob]),
        "seq": (1, 2, 3, 4),
    }.get(name, ())


def _mix(values: Any, names: tuple[str, ...]) -> Any:
    """The generated values, or now and then the id of something that exists."""
    if not isinstance(values, dict):
        return st.just(values)
    options = {
        name: st.sampled_from([value, *_known(name)]) if name in names else st.just(value)
        for name, value in values.items()
    }
    return st.fixed_dictionaries(options)


@WITH_TOKEN.hook
def flatmap_case(_: Any, case: Any) -> Any:
    """Point paths and bodies at real conversations, users and messages, except where the case
    is meant to be invalid (a real id there would make it valid)."""
    path = case.path_parameters
    if not case.meta.is_negative_at(ParameterLocation.PATH):
        path = _mix(path, ("conversation_id", "user_id", "seq"))
    body = case.body
    if not case.meta.is_negative_at(ParameterLocation.BODY):
        body = _mix(body, ("conversation_id", "user_id", "members"))

    def pointed(parts: tuple[Any, Any]) -> Any:
        case.path_parameters, case.body = parts
        return case

    return st.tuples(
        path if isinstance(path, st.SearchStrategy) else st.just(path),
        body if isinstance(body, st.SearchStrategy) else st.just(body),
    ).map(pointed)


def _not_the_discovery_route(context: Any, path_parameters: dict[str, Any] | None) -> bool:
    """/api/conversations/public is the discovery route, so a conversation with the id "public"
    could not be addressed; ids are UUIDs the server makes, so none ever is."""
    single = context.operation.path == "/api/conversations/{conversation_id}"
    return not (single and (path_parameters or {}).get("conversation_id") == "public")


WITH_TOKEN.hook("filter_path_parameters")(_not_the_discovery_route)
WITHOUT_TOKEN.hook("filter_path_parameters")(_not_the_discovery_route)


@WITH_TOKEN.auth(refresh_interval=None)
class FuzzerToken:
    def get(self, case: Any, _: Any) -> str:
        if case.operation.path == "/api/logout":  # a fresh session each time, so the others live on
            return _log_in("fuzzer")[0]
        return world().token

    def set(self, case: Any, token: str, _: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@WITH_TOKEN.parametrize()
@FUZZ
def test_every_operation_with_a_valid_token(case: Any) -> None:
    case.call_and_validate(excluded_checks=NOT_CHECKED)


@WITHOUT_TOKEN.parametrize()
@FUZZ
def test_every_operation_without_a_token(case: Any) -> None:
    response = case.call_and_validate(excluded_checks=NOT_CHECKED)
    if case.operation.definition.raw.get("security") and case.method.upper() == case.operation.method.upper():
        # The token is checked first, whatever the body or query; only a path that matches no
        # route at all (a seq that is not a number) is a 404 before that.
        unroutable = case.meta.is_negative_at(ParameterLocation.PATH)
        assert response.status_code in ((401, 404) if unroutable else (401,)), response.text
