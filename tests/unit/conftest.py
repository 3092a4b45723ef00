"""Unit-test wiring: the core on the production in-memory adapters."""

import pytest

from convocore.adapters.system import SystemClock
from tests.support.wiring import Chat, FrozenClock


@pytest.fixture
def chat() -> Chat:
    return Chat(clock=SystemClock())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def timed_chat(clock: FrozenClock) -> Chat:
    """For tests that must control time: token expiry, the order of activity and of joining."""
    return Chat(clock=clock)
