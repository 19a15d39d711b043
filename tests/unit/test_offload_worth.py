"""Which bodies go to the offload worker while another team asks (router/server/offload.py
`Offload.worth`): by bytes, or by the JSON objects and arrays they hold, at each boundary."""

from __future__ import annotations

from router.server.offload import Offload
from router.settings import Settings


def _objects(count: int) -> bytes:
    """A JSON array of `count - 1` empty objects: `count` objects and arrays in all."""
    return b"[" + b",".join([b"{}"] * (count - 1)) + b"]"


def test_a_body_goes_by_its_bytes_or_by_its_objects_at_each_boundary() -> None:
    offload = Offload(1000, min_objects=10)
    assert offload.worth(b" " * 1000)  # at the size
    assert not offload.worth(b" " * 999)
    assert offload.worth(_objects(10))  # at the count, in 28 bytes
    assert not offload.worth(_objects(9))
    assert offload.worth(b'{"s": "' + b"{" * 20 + b'"}')  # brackets in a string count too


def test_objects_off_means_bytes_alone() -> None:
    dense = _objects(500)
    assert not Offload(10_000, min_objects=0).worth(dense)
    assert Offload(10_000, min_objects=100).worth(dense)
    defaults = Settings()
    assert (defaults.offload_bytes, defaults.offload_objects) == (65_536, 1000)
