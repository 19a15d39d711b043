"""What a provider bills as input beyond the messages' text, bounded from above, so that a
budget's reservation and `limits.max_prompt_tokens` count everything a request sends.

- Text that is not message content: tool and function definitions, an assistant's tool calls
  (their arguments), a structured-output schema. Counted as UTF-8 bytes (no token of a
  byte-level BPE vocabulary is shorter than one byte).
- Images: OpenAI's documented formula for GPT-4o-class models: `detail: low` 85 tokens;
  otherwise the image is fitted within 2048 x 2048, then its shorter side within 768, and each
  512-pixel tile costs 170 tokens on top of 85. Dimensions are read from a data URL's header
  (PNG, GIF, JPEG, WebP); an image by URL or of an unknown format counts at the formula's
  maximum, 1,445 tokens.
- Audio: at most 10 tokens per second (OpenAI's audio input rate), bounded from the payload
  by its bitrate floor (8 kbit/s): bytes / 100.
- Files: their decoded bytes; a file named by id alone cannot be seen (counted as 0; a
  gap this bound leaves, documented in docs/budgets.md).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from router.request import BillableInput

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
MAX_IMAGE_TOKENS = LOW_DETAIL_TOKENS + 8 * TILE_TOKENS  # a 2048 x 768 image: 8 tiles
_HEADER_BYTES = 65_536  # of a decoded image: where every format here states its size
_AUDIO_BYTES_PER_TOKEN = 100


def image_tokens(url: str, detail: str | None = None) -> int:
    """Input tokens of one image at most (the formula in this module's docstring)."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = _data_url_size(url)
    if size is None:
        return MAX_IMAGE_TOKENS
    return tiles_tokens(*size)


def tiles_tokens(width: int, height: int) -> int:
    """OpenAI's high-detail count for an image of `width` x `height` pixels."""
    if width <= 0 or height <= 0:
        return MAX_IMAGE_TOKENS
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return min(LOW_DETAIL_TOKENS + TILE_TOKENS * tiles, MAX_IMAGE_TOKENS)


def _decoded_head(data: str) -> bytes | None:
    head = data[: _HEADER_BYTES * 4 // 3 + 4]
    head = head[: len(head) - len(head) % 4]
    try:
        return base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return None


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:"):
        return None
    meta, _, data = url.partition(",")
    if not meta.endswith(";base64"):
        return None
    head = _decoded_head(data)
    return None if head is None else image_size(head)


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, GIF, JPEG or WebP file."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _decoded_length(data: str) -> int:
    """Bytes a base64 payload decodes to (a data URL's, or bare)."""
    payload = data.partition(",")[2] if data.startswith("data:") else data
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def part_tokens(part: Mapping[str, Any]) -> int:
    """A content part that is not text (chat's `image_url`, `input_audio`, `file`; the
    Responses API's `input_image`, `input_file`), at its upper bound; 0 for text."""
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url") or {}
        return image_tokens(str(image.get("url") or ""), image.get("detail"))
    if kind == "input_image":
        return image_tokens(str(part.get("image_url") or ""), part.get("detail"))
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        return _decoded_length(str(audio.get("data") or "")) // _AUDIO_BYTES_PER_TOKEN + 1
    if kind == "file":
        return _decoded_length(str((part.get("file") or {}).get("file_data") or ""))
    if kind == "input_file":
        return _decoded_length(str(part.get("file_data") or ""))
    return 0


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def chat_input(body: Mapping[str, Any]) -> BillableInput:
    """What a chat completions body (as the client sent it) bills beyond message text."""
    texts: list[str] = []
    media = 0
    for key in ("tools", "functions"):
        if body.get(key):
            texts.append(_json(body[key]))
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("json_schema"):
        texts.append(_json(response_format["json_schema"]))
    for message in _mappings(body.get("messages")):
        for key in ("tool_calls", "function_call"):
            if message.get(key):
                texts.append(_json(message[key]))
        content = message.get("content")
        if isinstance(content, list):
            media += sum(part_tokens(part) for part in _mappings(content))
    text = "\n".join(texts)
    return BillableInput(len(text.encode()), media, text)


def _mappings(items: object) -> Iterable[Mapping[str, Any]]:
    if isinstance(items, list):
        yield from (item for item in items if isinstance(item, Mapping))


def unseen_images(body: Mapping[str, Any]) -> int:
    """A Responses body's images by file id (which a chat translation cannot carry), each at
    the formula's maximum."""
    items = body.get("input")
    found = 0
    for item in _mappings(items):
        found += sum(
            MAX_IMAGE_TOKENS
            for part in _mappings(item.get("content"))
            if part.get("type") == "input_image" and not part.get("image_url")
        )
    return found
