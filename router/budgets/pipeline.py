"""Auto-pipelining of Lua script calls to Redis: every call made in the same event-loop turn
goes to Redis in one pipeline (one round trip, one packing pass), each caller awaiting its
own reply. Under load many requests reserve and settle in the same turn, which divides the
client's CPU per call by the batch (bench/RESULTS.md (j)); alone, a call costs what it did.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any


class ScriptUnavailable(Exception):
    """Redis could not run the script (unreachable, or an error of its own)."""


class Pipeliner:
    """Runs named Lua scripts by EVALSHA, batched per event-loop turn; a script Redis no
    longer knows (it restarted) is loaded again and the call retried once."""

    def __init__(self, client: Any, scripts: dict[str, str]) -> None:
        self._client = client
        self._scripts = scripts
        # Redis names a script by the SHA-1 of its text (an identifier, not a protection)
        self._sha = {
            name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
            for name, text in scripts.items()
        }
        self._pending: list[tuple[str, list[Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    def call(self, script: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, [*keys, *args, len(keys)], future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[tuple[str, list[Any], asyncio.Future[Any]]]) -> None:
        import redis

        try:
            results = await self._execute(batch)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                for text in self._scripts.values():
                    await self._client.script_load(text)  # Redis restarted: scripts are gone
                results = await self._execute(batch)
        except (redis.RedisError, OSError) as exc:
            failure = ScriptUnavailable(f"redis: {exc}")
            for *_, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(ScriptUnavailable(f"redis: {result}"))
            else:
                future.set_result(result)

    async def _execute(self, batch: list[tuple[str, list[Any], asyncio.Future[Any]]]) -> list[Any]:
        import redis

        if len(batch) == 1:  # alone: a plain command costs less than a pipeline of one
            script, arguments, _ = batch[0]
            *values, key_count = arguments
            try:
                return [
                    await self._client.execute_command(
                        "EVALSHA", self._sha[script], key_count, *values
                    )
                ]
            except redis.ResponseError as exc:  # NOSCRIPT and script errors: as a pipeline
                return [exc]
        async with self._client.pipeline(transaction=False) as pipe:
            for script, arguments, _ in batch:
                *values, key_count = arguments
                pipe.execute_command("EVALSHA", self._sha[script], key_count, *values)
            return list(await pipe.execute(raise_on_error=False))

    async def drain(self) -> None:
        """Wait for what is in flight (before closing the client)."""
        if self._pending:
            self._flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
