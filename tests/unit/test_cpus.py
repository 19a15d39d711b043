"""The local model's default thread count follows the container's CPU limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from router.cpus import available_cpus

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000", CORES),
        ("100000 100000", 1),
        ("150000 100000", min(CORES, 2)),
        ("1000 100000", 1),
    ],
    ids=["no limit", "1 CPU", "1.5 CPUs round up", "a sliver still runs one"],
)
def test_cgroup_v2_quota_caps_the_cores(tmp_path: Path, cpu_max: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert available_cpus(tmp_path) == expected


def test_cgroup_v1_quota_caps_the_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert available_cpus(tmp_path) == CORES


def test_no_cgroup_files_means_the_cores(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == CORES
