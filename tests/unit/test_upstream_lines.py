"""An upstream event stream read line by line (router/backends/openai_http.py `lines`): when
its connection breaks after data that was not read yet, that data's whole lines come first,
then the error (aiohttp's own reader raises the error and drops them)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from router.backends.openai_http import lines


class _Open(BaseProtocol):
    """A connection's protocol that stays open, with no socket (flow control idle)."""

    @property
    def connected(self) -> bool:
        return True


def _reader() -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    return aiohttp.StreamReader(_Open(loop), 2**16, loop=loop)


async def _read(content: aiohttp.StreamReader) -> tuple[list[bytes], BaseException | None]:
    found: list[bytes] = []
    try:
        async for line in lines(content):
            found.append(line)
    except aiohttp.ClientPayloadError as exc:
        return found, exc
    return found, None


async def test_lines_that_came_before_a_break_are_read_before_its_error() -> None:
    content = _reader()
    content.feed_data(b'data: {"id": "a", "usage": {"prompt_tokens": 3}}\n\ndata: {"id"')
    content.set_exception(aiohttp.ClientPayloadError("cut"))  # before anything was read
    with pytest.raises(aiohttp.ClientPayloadError):
        await content.readline()  # what aiohttp does alone: the line is lost
    content = _reader()
    content.feed_data(b'data: {"id": "a", "usage": {"prompt_tokens": 3}}\n\ndata: {"id"')
    content.set_exception(aiohttp.ClientPayloadError("cut"))
    found, error = await _read(content)
    assert found == [b'data: {"id": "a", "usage": {"prompt_tokens": 3}}\n', b"\n"]  # not the part
    assert isinstance(error, aiohttp.ClientPayloadError)


async def test_a_whole_stream_is_read_as_aiohttp_reads_it() -> None:
    content = _reader()
    content.feed_data(b"data: 1\n\ndata: [DONE]\n")
    content.feed_eof()
    assert await _read(content) == ([b"data: 1\n", b"\n", b"data: [DONE]\n"], None)


async def test_a_break_while_waiting_for_data_is_raised() -> None:
    content = _reader()
    content.feed_data(b"data: 1\n")
    reading = asyncio.ensure_future(_read(content))
    await asyncio.sleep(0)  # it read the line and waits for more
    content.set_exception(aiohttp.ClientPayloadError("cut"))
    found, error = await reading
    assert found == [b"data: 1\n"] and isinstance(error, aiohttp.ClientPayloadError)
