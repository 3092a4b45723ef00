"""The wire types of the HTTP and WebSocket APIs, shared by the server and its clients."""
