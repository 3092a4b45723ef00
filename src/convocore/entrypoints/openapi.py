"""What the OpenAPI document says that Litestar cannot infer from the handlers: the problem
responses each operation really gives, alternate success statuses, and closed request bodies."""

from typing import Any

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from convocore.entrypoints.errors import HTTP_KINDS, KINDS, PROBLEM_JSON
from convocore.wire.schemas import ProblemOut

_TITLES = {kind.status: kind.title for kind in [*KINDS.values(), *HTTP_KINDS.values()]}

# What every operation can answer, whatever it does.
ANY = (400, 429, 503)
# With a JSON request body.
WITH_BODY = (413, 415, 422)
# With a bearer token.
WITH_TOKEN = (401,)
# With path parameters: an id or seq outside its declared pattern or range.
WITH_PATH = (422,)


def problems(*statuses: int | tuple[int, ...]) -> dict[int, ResponseSpec]:
    """The documented problem responses: the statuses given (singly or as the groups above),
    plus those of ANY."""
    codes = set(ANY)
    for status in statuses:
        codes.update(status if isinstance(status, tuple) else (status,))
    return {
        code: ResponseSpec(
            data_container=ProblemOut,
            description=_TITLES[code],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in sorted(codes)
    }


def also(status: int, data: Any, description: str) -> dict[int, ResponseSpec]:
    """A second success status for the same operation, e.g. 200 for an idempotent replay."""
    return {status: ResponseSpec(data_container=data, description=description, generate_examples=False)}


class ClosedRequestBodies(OpenAPISchemaPlugin):
    """Structs that refuse unknown fields get `additionalProperties: false`, so clients and
    fuzzers know that an extra field is an error (422), not something ignored."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        kind = field_definition.annotation
        return (
            isinstance(kind, type)
            and issubclass(kind, msgspec.Struct)
            and kind.__struct_config__.forbid_unknown_fields
            and kind.__struct_config__.tag_field is None
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        builtin = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema: Schema = builtin.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
