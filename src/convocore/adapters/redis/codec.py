"""Events on the Redis wire: ``<event type>|<the event as JSON>``.

Every process decodes what it hears back into domain events and hands them to its own
real-time engine, which encodes each once for its sockets. A user's password hash is not a
thing to send anywhere: a ``MemberJoined`` travels with it blanked.
"""

import dataclasses
import typing

import msgspec

from convocore.domain import events as ev
from convocore.domain.events import Event

_TYPES: tuple[type[Event], ...] = typing.get_args(Event)
_DECODERS: dict[bytes, msgspec.json.Decoder[Event]] = {
    kind.__name__.encode(): msgspec.json.Decoder(kind) for kind in _TYPES
}
_encode = msgspec.json.Encoder().encode


def encode(event: Event) -> bytes:
    if isinstance(event, ev.MemberJoined) and event.user is not None:
        event = dataclasses.replace(event, user=dataclasses.replace(event.user, password_hash=""))
    return type(event).__name__.encode() + b"|" + _encode(event)


def decode(data: bytes) -> Event:
    """Raises ``ValueError`` for bytes that are not an event this version knows."""
    kind, _, payload = data.partition(b"|")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ValueError(f"not an event this version knows: {kind[:40]!r}")
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as error:
        raise ValueError(f"a {kind.decode()} that does not decode: {error}") from error
