"""In-memory adapters: production code for the embedded mode and for tests."""

from convocore.adapters.memory.realtime import (
    InProcessBroadcaster,
    MemoryOutlet,
    MemoryPresenceStore,
    MemoryRateLimiter,
)
from convocore.adapters.memory.storage import MemoryStore, MemoryUnitOfWork, MemoryUnitOfWorkFactory

__all__ = [
    "InProcessBroadcaster",
    "MemoryOutlet",
    "MemoryPresenceStore",
    "MemoryRateLimiter",
    "MemoryStore",
    "MemoryUnitOfWork",
    "MemoryUnitOfWorkFactory",
]
