"""Entrypoints: the composition root, the HTTP and WebSocket API, and the command line."""
