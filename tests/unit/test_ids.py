"""Ids are version-4 UUIDs in canonical text: what ``str(uuid.uuid4())`` gave before."""

import uuid

from convocore.adapters.system import UuidGenerator


def test_ids_are_canonical_version_4_uuids() -> None:
    ids = [UuidGenerator().new_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case hex, dashes at 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_every_bit_but_the_fixed_six_is_random() -> None:
    values = [uuid.UUID(UuidGenerator().new_id()).int for _ in range(2_000)]
    seen_set = seen_clear = 0
    for value in values:
        seen_set |= value
        seen_clear |= ~value & ((1 << 128) - 1)
    varying = seen_set & seen_clear  # bits seen both ways
    fixed = (0xF << 76) | (0x3 << 62)  # version nibble and variant
    assert varying == ((1 << 128) - 1) & ~fixed  # 122 random bits (each fixed in 2,000 draws: p = 2**-1999)
