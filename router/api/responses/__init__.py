"""POST /v1/responses, translated to and from chat completions on every tier.

`request.py` declares the Responses request surface and turns a request into the chat
completions body the cascade runs (`to_chat`), refusing what has no sound translation with a
400 that says why; `render.py` turns the chat answer (whole, or streamed chunk by chunk) back
into a Response object and its stream of typed events. docs/responses.md lists both.
"""
