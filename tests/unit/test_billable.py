"""What a request bills as input beyond its messages' text (router/api/billable.py), and the
reservation that follows from it: tools, tool calls, images, audio, files and `n`."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from router.api import billable
from router.api.bodies import parse_request
from router.api.surfaces import RESPONSES
from router.policy.model import LimitsSpec

LIMITS = LimitsSpec()


def _png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def _jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def _data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1024, 1024), 765),  # OpenAI's worked examples: 768 x 768, 4 tiles
        ((2048, 4096), 1105),  # 1024 x 2048 -> 768 x 1536, 6 tiles
        ((512, 512), 255),  # one tile
        ((100, 3000), 765),  # 68 x 2048: 1 x 4 tiles
        ((768, 2048), 1445),  # the formula's maximum
    ],
)
def test_the_image_formula(size: tuple[int, int], tokens: int) -> None:
    assert billable.tiles_tokens(*size) == tokens


def test_image_sizes_are_read_from_data_urls_and_unknown_ones_count_at_the_maximum() -> None:
    assert billable.image_tokens(_data_url(_png(1024, 1024))) == 765
    assert billable.image_tokens(_data_url(_jpeg(512, 512), "jpeg")) == 255
    gif = b"GIF89a" + struct.pack("<HH", 2048, 4096) + b"\x00" * 8
    assert billable.image_tokens(_data_url(gif, "gif")) == 1105
    webp = b"RIFF" + b"\x00" * 4 + b"WEBPVP8X" + b"\x00" * 8 + (1023).to_bytes(3, "little")
    webp += (1023).to_bytes(3, "little")
    assert billable.image_size(webp) == (1024, 1024)
    assert billable.image_tokens("https://example.com/cat.png") == billable.MAX_IMAGE_TOKENS
    assert billable.image_tokens(_data_url(b"not an image")) == billable.MAX_IMAGE_TOKENS
    assert billable.image_tokens("data:image/png;base64,!!!") == billable.MAX_IMAGE_TOKENS
    assert billable.image_tokens(_data_url(_png(4000, 4000)), "low") == 85


def test_a_900_kb_image_counts_by_its_pixels_not_its_bytes() -> None:
    url = _data_url(_png(1024, 1024) + b"\x00" * 900_000)
    body = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        ],
    }
    found = parse_request(body, LIMITS, chat=True).billable
    assert (found.media_tokens, found.text_bytes) == (765, 0)


def test_tools_tool_calls_and_schemas_are_billed_input() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}" * 500}}
    body = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "result"},
        ],
        "tools": [tool] * 128,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}},
        },
    }
    found = parse_request(body, LIMITS, chat=True).billable
    assert found.text_bytes > 128 * 60 + 1000
    assert found.text_bytes == len(found.text.encode())
    assert "arguments" in found.text and '"parameters"' in found.text


def test_every_choice_is_reserved_at_max_tokens() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 128}
    client = parse_request({**body, "max_tokens": 100}, LIMITS, chat=True)
    assert (client.choices, client.output_bound) == (128, 12_800)
    single = parse_request({**body, "n": None}, LIMITS, chat=True)
    assert single.output_bound == LIMITS.default_max_tokens


def test_audio_and_files_count_from_their_payload() -> None:
    audio = base64.b64encode(b"\x00" * 100_000).decode()
    pdf = base64.b64encode(b"%PDF" + b"\x00" * 9_996).decode()
    body = {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                    {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
                ],
            }
        ],
    }
    found = parse_request(body, LIMITS, chat=True).billable
    assert found.media_tokens == (100_000 // 100 + 1) + 10_000


def test_a_responses_input_image_counts_by_url_or_at_the_maximum_by_file_id() -> None:
    url = _data_url(_png(512, 512))
    body = {
        "model": "auto",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": url},
                    {"type": "input_image", "file_id": "file-1"},
                ],
            }
        ],
    }
    client = RESPONSES.read(body, LIMITS).client
    assert client.billable.media_tokens == 255 + billable.MAX_IMAGE_TOKENS
