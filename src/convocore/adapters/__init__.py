"""Adapters: the memory and SQL storage, the broadcasters, the password hasher."""
