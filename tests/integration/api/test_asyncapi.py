"""The AsyncAPI document of the sockets: made from the frame Structs, complete, self-contained,
served by the app, and no frame left out of it or out of docs/realtime.md."""

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from convocore import __version__
from convocore.entrypoints.app import create_app
from convocore.entrypoints.asyncapi import asyncapi_document, asyncapi_schema
from convocore.entrypoints.settings import Settings
from convocore.wire import frames as f
from tests.support.remote import SERVER_FRAME_TYPES

CLIENT_TAGS = {"message.send", "ping", "typing", "resume"}
SERVER_TAGS = set(SERVER_FRAME_TYPES)
REALTIME_MD = Path(__file__).resolve().parents[3] / "docs" / "realtime.md"


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


CODE_CLIENT_TAGS = {_tag(cls) for cls in typing.get_args(f.client_decoder.type)}
CODE_SERVER_TAGS = {_tag(cls) for cls in f.ServerFrame.__subclasses__()}
ALL = sorted(
    {("receive", t) for t in CLIENT_TAGS | CODE_CLIENT_TAGS} | {("send", t) for t in SERVER_TAGS | CODE_SERVER_TAGS}
)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external or malformed $ref {ref!r}"
    node: Any = doc
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref!r} goes through a non-object"
        assert key in node, f"{ref!r} does not resolve: no {key!r}"
        node = node[key]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs_in(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs_in(item)]
    return []


def messages_of(doc: dict[str, Any], *, channel: str, action: str) -> dict[str, dict[str, Any]]:
    """The messages the server ``action``s on ``channel``, by their name (the frame's type)."""
    found: dict[str, dict[str, Any]] = {}
    for operation in doc["operations"].values():
        if operation["action"] != action or deref(doc, operation["channel"]) is not doc["channels"][channel]:
            continue
        for ref in operation["messages"]:
            message = deref(doc, ref)
            found[message["name"]] = message
    return found


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    # Through JSON, as clients see it.
    document: dict[str, Any] = json.loads(json.dumps(asyncapi_document()))
    return document


def test_it_is_an_asyncapi_3_document_of_this_version(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {**doc["info"], "title": "Convocore WebSocket API", "version": __version__}
    assert doc["servers"]["local"] == {**doc["servers"]["local"], "host": "127.0.0.1:8000", "protocol": "ws"}


def test_the_frames_in_the_code_are_exactly_the_documented_ones() -> None:
    assert CODE_CLIENT_TAGS == CLIENT_TAGS
    assert CODE_SERVER_TAGS == SERVER_TAGS


@pytest.mark.parametrize("channel", ["chatSocket", "userSocket"])
@pytest.mark.parametrize(("action", "tag"), ALL)
def test_every_frame_is_a_message_whose_payload_pins_its_type(
    doc: dict[str, Any], channel: str, action: str, tag: str
) -> None:
    messages = messages_of(doc, channel=channel, action=action)
    assert tag in messages, f"no {tag!r} message the server {action}s on {channel}"
    message = messages[tag]
    assert message["summary"], f"{tag!r} has no summary"
    payload = deref(doc, message["payload"])
    assert payload["type"] == "object"
    assert "type" in payload["required"]
    pinned = payload["properties"]["type"]
    assert pinned.get("enum") == [tag] or pinned.get("const") == tag, pinned


def test_client_frames_are_received_and_server_frames_sent(doc: dict[str, Any]) -> None:
    for channel in ("chatSocket", "userSocket"):
        assert set(messages_of(doc, channel=channel, action="receive")) == CLIENT_TAGS
        assert set(messages_of(doc, channel=channel, action="send")) == SERVER_TAGS


def test_every_ref_resolves_inside_the_document(doc: dict[str, Any]) -> None:
    refs = refs_in(doc)
    assert len(refs) > 50
    for ref in refs:
        assert resolve(doc, ref) is not None


def test_payload_schemas_say_what_the_structs_say(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["MessageSend"]["additionalProperties"] is False  # unknown fields are refused
    assert set(schemas["MessageSend"]["required"]) == {"type", "body"}
    joined = schemas["MemberJoinedFrame"]["properties"]
    assert {"$ref": "#/components/schemas/UserOut"} in joined["user"]["anyOf"]
    assert set(schemas["MemberOut"]["properties"]) == {
        "conversation_id",
        "user_id",
        "role",
        "joined_at",
        "last_read_seq",
    }
    assert set(schemas["PresenceFrame"]["properties"]["status"]["enum"]) == {"online", "offline"}
    assert "conversation_id" not in schemas["PresenceFrame"]["properties"]


def test_both_sockets_with_their_query_and_close_codes(doc: dict[str, Any]) -> None:
    chat, user = doc["channels"]["chatSocket"], doc["channels"]["userSocket"]
    assert chat["address"] == "/ws/chat/{conversation_id}/"
    assert set(chat["parameters"]) == {"conversation_id"}
    assert user["address"] == "/ws/"
    chat_query, user_query = chat["bindings"]["ws"]["query"], user["bindings"]["ws"]["query"]
    assert set(chat_query["properties"]) == {"token", "since"}
    assert set(user_query["properties"]) == {"token"}
    assert chat_query["required"] == user_query["required"] == ["token"]
    for code in ("4400", "4401", "4403", "4408", "1001"):
        assert f"`{code}`" in chat["description"]
    for code in ("4401", "4408", "1001"):
        assert f"`{code}`" in user["description"]


def test_the_protocol_reference_shows_every_frame() -> None:
    text = REALTIME_MD.read_text()
    for tag in sorted(CLIENT_TAGS | SERVER_TAGS | CODE_CLIENT_TAGS | CODE_SERVER_TAGS):
        assert f'"type":"{tag}"' in text.replace(": ", ":"), f"docs/realtime.md has no example of {tag!r}"


async def test_the_app_serves_it_as_json() -> None:
    app = create_app(Settings(memory=True, argon2_time_cost=1, argon2_memory_cost=1024))
    if not any(route.path == "/schema/asyncapi.json" for route in app.routes):
        app.register(asyncapi_schema)  # until app.py registers it
    async with AsyncTestClient(app) as client:
        r = await client.get("/schema/asyncapi.json")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == json.loads(json.dumps(asyncapi_document()))
        assert asyncapi_document() is asyncapi_document()  # built once
        openapi = (await client.get("/schema/openapi.json")).json()
        assert "/schema/asyncapi.json" not in openapi["paths"]
