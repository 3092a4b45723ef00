"""The Allow header of OPTIONS answers, listing every method of the path.

Litestar 2 builds the OPTIONS handler of a path when its first handler is registered, and that
handler keeps listing only the methods known then (litestar-org/litestar#4169, fixed in v3):
OPTIONS /api/conversations/ said `OPTIONS, POST` and left out GET.
"""

from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


async def allow_every_method(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    headers = MutableScopeHeaders.from_message(message)
    if "allow" not in headers:  # a CORS preflight, or no route at all
        return
    template = scope.get("path_template")
    for route in scope["app"].routes:
        if isinstance(route, HTTPRoute) and route.path_format == template:
            headers["allow"] = ", ".join(sorted(route.methods))
            return
