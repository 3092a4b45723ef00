"""Convocore: a real-time chat backend laid out as a hexagonal service."""

__version__ = "0.1.0"
