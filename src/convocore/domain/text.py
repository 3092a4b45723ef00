"""Text every storage can keep: PostgreSQL's text holds no NUL, and a lone surrogate is not
UTF-8 at all. What the domain stores is checked here, so every database answers alike."""

import re

from convocore.domain.errors import Invalid

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str, *, field: str) -> str:
    """``text``, or ``Invalid`` naming ``field`` when it holds a character no storage keeps."""
    if _UNSTORABLE.search(text):
        raise Invalid("must not contain NUL or unpaired surrogate characters", field=field)
    return text
