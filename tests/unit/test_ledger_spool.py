from __future__ import annotations

from pathlib import Path

import pytest

from router.ledger.spool import Spool


def test_lines_are_read_back_in_order_in_batches(tmp_path: Path) -> None:
    spool = Spool.claim(tmp_path)
    spool.append([b'{"n":%d}' % n for n in range(5)])
    spool.append([b'{"n":5}'])
    lines, offset = spool.read(4)
    assert lines == [b'{"n":%d}' % n for n in range(4)]
    spool.offset = offset
    assert spool.pending
    lines, spool.offset = spool.read(100)
    assert lines == [b'{"n":4}', b'{"n":5}']
    assert not spool.pending
    spool.clear()
    assert spool.size == 0
    spool.close()


def test_each_process_gets_its_own_spool_and_finds_orphans(tmp_path: Path) -> None:
    first = Spool.claim(tmp_path)
    second = Spool.claim(tmp_path)  # another open file: the lock keeps them apart
    assert first.path != second.path
    second.append([b"{}"])
    assert list(Spool.orphans(tmp_path, first.path)) == []  # held by its owner
    second.close()
    (orphan,) = Spool.orphans(tmp_path, first.path)
    assert orphan.path == second.path
    with pytest.raises(BlockingIOError):
        Spool(second.path)
    orphan.close()
    first.close()


def test_a_torn_last_line_is_closed_off(tmp_path: Path) -> None:
    path = tmp_path / "spool-0.jsonl"
    path.write_bytes(b'{"ok":1}\n{"tor')
    spool = Spool(path)
    spool.append([b'{"ok":2}'])
    lines, _ = spool.read(10)
    assert lines == [b'{"ok":1}', b'{"tor', b'{"ok":2}']  # the torn line stands alone
    spool.close()
