"""The aiohttp server: the app and its state, middlewares, the connection handler, policy
reloads, and the endpoints (generation, embeddings, info) over one request lifecycle."""
